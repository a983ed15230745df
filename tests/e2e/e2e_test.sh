#!/usr/bin/env bash
# End to end against a real redis-server: the system run with a consumer crashing by SIGKILL at a given
# point (or a storage fault), restarted, drained, verified exactly-once. Usage: e2e_test.sh BIN_DIR MODE
set -euo pipefail
bin=$1
mode=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
case "$mode" in
  before-reserve|after-reserve|after-commit)
    exec "$here/scripts/run-stream-system" --bin="$bin" --events=1200 --crash-at="$mode" --crash-after=150 ;;
  mid-batch)
    exec "$here/scripts/run-stream-system" --bin="$bin" --events=1200 --batch=32 --crash-at=mid-batch --crash-after=150 ;;
  kill)
    exec "$here/scripts/run-stream-system" --bin="$bin" --events=1200 --kill-after=200 ;;
  fault-io|fault-nospace)
    exec "$here/scripts/run-stream-system" --bin="$bin" --events=1200 --fault="${mode#fault-}" --fault-after=200 \
      --fault-ms=700 ;;
  redis-restart)
    exec "$here/scripts/run-stream-system" --bin="$bin" --events=1200 --redis-restart-after=300 ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
