#!/usr/bin/env bash
# `make fuzz`: a fuzz campaign over every libFuzzer target in fuzz/, one at a
# time (each gets the whole machine's spare cores' worth of one process), each
# for a fixed time box, then the guest-side device fuzzer if it is there.
#
#   scripts/fuzz-all.sh [BUILD]
#   FUZZ_SECONDS=600        time box per target (default 10 minutes)
#   FUZZ_TARGETS="a b"      only these targets (names as in fuzz/<name>.cmake)
#   FUZZ_UPDATE_CORPUS=1    afterwards, add to fuzz/corpus/<target> the few
#                           grown inputs that reach new code (a minimising
#                           merge, see update_corpus below)
#   FUZZ_SEED_MAX_FILES=64  with FUZZ_UPDATE_CORPUS: at most this many new
#   FUZZ_SEED_MAX_BYTES=65536  seeds a target, each at most this large, and
#   FUZZ_SEED_BUDGET_BYTES=262144  at most this many bytes of them, so the
#                           repository's corpus stays small
#
# The grown corpus is kept in BUILD/fuzz-corpus/<target> between runs, each
# target's output in BUILD/fuzz-logs/<target>.log, and crash, leak, timeout and
# out-of-memory inputs in BUILD/fuzz-crashes/<target>-<kind>-<hash>. Add each as
# fuzz/corpus/<target>/regression-<what> once fixed: the smoke runs in
# `make test` (fuzz/smoke.sh) replay every seed, and a corpus refresh keeps
# every regression-* file whether or not it still adds coverage.
set -uo pipefail
build=${1:-build}
seconds=${FUZZ_SECONDS:-600}
seed_max_bytes=${FUZZ_SEED_MAX_BYTES:-65536}
seed_max_files=${FUZZ_SEED_MAX_FILES:-64}
seed_budget_bytes=${FUZZ_SEED_BUDGET_BYTES:-262144}
repo=$(cd "$(dirname "$0")/.." && pwd)

all_targets() {
  sed -n 's/^hv_fuzz(\([A-Za-z0-9_]*\).*/\1/p' "$repo"/fuzz/*.cmake | sort
}
if [ -n "${FUZZ_TARGETS:-}" ]; then
  targets=$FUZZ_TARGETS
  for t in $targets; do
    all_targets | grep -qx "$t" || { echo "fuzz-all: no fuzz target named $t (see fuzz/*.cmake)" >&2; exit 2; }
  done
else
  targets=$(all_targets)
fi

# shellcheck disable=SC2086
cmake --build "$build" --target $targets || exit 2
mkdir -p "$build/fuzz-corpus" "$build/fuzz-crashes" "$build/fuzz-logs"

# Copies the repository's seeds for a target into the grown corpus.
seed_corpus() {
  local name=$1 corpus=$2
  [ -d "$repo/fuzz/corpus/$name" ] && cp -rn "$repo/fuzz/corpus/$name"/. "$corpus"/ 2>/dev/null
  return 0
}
# With FUZZ_UPDATE_CORPUS: adds to fuzz/corpus/<target> the fewest inputs of
# the grown corpus that reach edges its seeds do not (a set-cover merge on
# edges alone, not hit counts, which would keep thousands), at most
# FUZZ_SEED_MAX_FILES new ones (the smallest first) of at most
# FUZZ_SEED_MAX_BYTES each and FUZZ_SEED_BUDGET_BYTES in all. The seeds
# already there stay, so regression seeds are never lost.
update_corpus() {
  local name=$1 bin=$2 corpus=$3 seeds="$repo/fuzz/corpus/$name"
  local merged
  merged=$(mktemp -d)
  mkdir -p "$seeds"
  cp -r "$seeds"/. "$merged"/
  if ! "$bin" -set_cover_merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=2048 "$merged" "$corpus" \
       >>"$build/fuzz-logs/$name.log" 2>&1; then
    echo "   corpus merge failed; fuzz/corpus/$name left as it was"
    rm -rf "$merged"
    return
  fi
  local added=0 bytes=0 file size
  while read -r file; do
    [ -e "$seeds/$file" ] && continue
    size=$(stat -c %s "$merged/$file")
    [ "$size" -le "$seed_max_bytes" ] || continue
    [ $added -lt "$seed_max_files" ] && [ $((bytes + size)) -le "$seed_budget_bytes" ] || break
    cp "$merged/$file" "$seeds/$file"
    added=$((added + 1))
    bytes=$((bytes + size))
  done < <(cd "$merged" && ls -rS)
  rm -rf "$merged"
  echo "   fuzz/corpus/$name: $added seeds added, $(find "$seeds" -type f | wc -l) in all," \
    "$(find "$seeds" -type f -printf '%s\n' | awk '{s += $1} END {print int(s / 1024)}') KiB"
}

summary=()
status=0
for name in $targets; do
  bin="$build/fuzz/$name"
  corpus="$build/fuzz-corpus/$name"
  log="$build/fuzz-logs/$name.log"
  mkdir -p "$corpus"
  seed_corpus "$name" "$corpus"
  echo "== $name: ${seconds}s"
  start=$(date +%s)
  "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$build/fuzz-crashes/$name-" "$corpus" >"$log" 2>&1
  rc=$?
  took=$(($(date +%s) - start))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | grep -v '/slow-unit-' | tail -1)
  if [ $rc -eq 0 ] && [ -z "$artifact" ]; then
    result=ok
  else
    status=1
    kind=failure
    case "$(basename "${artifact:-x}")" in
      "$name-crash-"*) kind=crash ;;
      "$name-leak-"*) kind=leak ;;
      "$name-timeout-"*) kind=timeout ;;
      "$name-oom-"*) kind=out-of-memory ;;
    esac
    result="$kind ${artifact:-(no input saved; see $log)}"
    grep -m1 -E '^(==[0-9]+== ?ERROR|SUMMARY|.*runtime error)' "$log" | sed 's/^/   /'
  fi
  echo "   $result (${runs:-?} runs in ${took}s)"
  summary+=("$(printf '%-24s %6ss %10s runs  %s' "$name" "$took" "${runs:-?}" "$result")")
  [ -n "${FUZZ_UPDATE_CORPUS:-}" ] && update_corpus "$name" "$bin" "$corpus"
done

# The guest-side device fuzzer (a test kernel hammering every device from
# inside a VM) has its own script; it runs after the libFuzzer targets.
if [ -x "$repo/scripts/device-fuzz.sh" ] && [ -z "${FUZZ_TARGETS:-}" ]; then
  echo "== device fuzzer (scripts/device-fuzz.sh)"
  if "$repo/scripts/device-fuzz.sh" "$build"; then
    summary+=("device-fuzz.sh            ok")
  else
    summary+=("device-fuzz.sh            failed")
    status=1
  fi
fi

echo
echo "fuzz campaign summary (${seconds}s a target; logs in $build/fuzz-logs, failing inputs in $build/fuzz-crashes)"
printf '%s\n' "${summary[@]}"
exit $status
