#!/usr/bin/env bash
# `make bench`: runs every benchmark script bench/*.bench.sh with the build
# directory as its argument. Each prints its figures side by side with its
# peer (usually QEMU) and the ratio.
set -uo pipefail
build=$(cd "${1:-build}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
status=0
echo "hostvisor benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), build $build"
echo "host: $(nproc) cores, $(awk '{print "load average " $1 " " $2 " " $3}' /proc/loadavg); when shared with other work, wall times vary"
for b in "$here"/*.bench.sh; do
  [ -e "$b" ] || continue
  echo "== $(basename "$b" .bench.sh)"
  bash "$b" "$build" || { echo "!! $(basename "$b") failed"; status=1; }
done
exit $status
