#!/usr/bin/env bash
# `make fuzz`: a longer campaign for every fuzz target (FUZZ_SECONDS each,
# default 300), keeping the grown corpus in BUILD/fuzz-corpus/<target> between
# runs. Crashes are written to BUILD/fuzz-crashes/.
set -euo pipefail
build=${1:-build}
seconds=${FUZZ_SECONDS:-300}
cmake --build "$build" --target fuzz_targets
mkdir -p "$build/fuzz-corpus" "$build/fuzz-crashes"
status=0
for bin in "$build"/fuzz/*; do
  [ -f "$bin" ] && [ -x "$bin" ] || continue
  name=$(basename "$bin")
  corpus="$build/fuzz-corpus/$name"
  mkdir -p "$corpus"
  [ -d "fuzz/corpus/$name" ] && cp -rn "fuzz/corpus/$name"/. "$corpus"/ 2>/dev/null || true
  echo "== $name: ${seconds}s"
  if ! "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
       -artifact_prefix="$build/fuzz-crashes/$name-" "$corpus"; then
    echo "!! $name found a failure (see $build/fuzz-crashes/)"
    status=1
  fi
done
scripts/device-fuzz.sh "$build" || status=1
exit $status
