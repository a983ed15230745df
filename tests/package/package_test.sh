#!/usr/bin/env bash
# Installs the build into a scratch prefix, then builds and runs an outside project against it.
set -euo pipefail
build_dir=$1
project_dir=$2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cmake --install "$build_dir" --prefix "$scratch/prefix" >/dev/null
cmake -S "$project_dir" -B "$scratch/build" -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/build" -j2 >/dev/null
"$scratch/build/consumer" "$scratch/db"
