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
# The same program built without CMake, from what pkg-config says (C++17 comes from the .pc's Cflags).
libdir=$(find "$scratch/prefix" -name idem.pc -printf '%h\n' | head -1)
test -n "$libdir" || { echo "idem.pc was not installed" >&2; exit 1; }
# shellcheck disable=SC2046
c++ -o "$scratch/consumer-pc" "$project_dir/consumer.cc" $(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs idem)
"$scratch/consumer-pc" "$scratch/db-pc"
