#!/usr/bin/env bash
# Short smoke run of one libFuzzer target over its seed corpus: a copy of the
# seeds (libFuzzer writes new inputs into its first corpus folder) and a
# bounded number of runs, so it fits in `make test`. FUZZ_RUNS overrides.
set -euo pipefail
target=$1 seeds=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null || true
exec "$target" -runs="${FUZZ_RUNS:-20000}" -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=2048 -timeout=10 "$work"
