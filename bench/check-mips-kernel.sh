#!/usr/bin/env bash
# Smoke test of the MIPS benchmark kernel on the software CPU (run by ctest as
# bench_kernel_counts; no timing): every workload passes with a few thousand
# iterations, and the instructions the emulator retired grow over a run with
# zero iterations by exactly what the kernel says its loop retires. A
# mismatch means the per-iteration counts in mips_workloads.h (which the
# benchmark divides by) or the emulator's counter are wrong.
#   check-mips-kernel.sh HOSTVISOR KERNEL
set -uo pipefail
hostvisor=${1:?usage: $0 HOSTVISOR KERNEL}
kernel=${2:?usage: $0 HOSTVISOR KERNEL}
iterations=3000
# Both runs pass a 20-digit count, so parsing it costs the same instructions.
pad() { printf '%020d' "$1"; }
passed=0 failed=0

# run WORKLOAD N: prints "<status> <loop instructions> <checksum> <retired>"
run() {
  local out err status
  err=$(mktemp)
  out=$(HOSTVISOR_EMU_STATS=1 timeout 60 "$hostvisor" --log-level info run --accel emu --memory 128M --debug-exit \
    --kernel "$kernel" --append "bench=$1 iterations=$(pad "$2")" </dev/null 2>"$err")
  status=$?
  local loop checksum retired
  loop=$(sed -n 's/.*loop_insns 0x\([0-9a-f]*\) .*/\1/p' <<<"$out")
  [ -n "$loop" ] && loop=$((16#$loop))
  checksum=$(sed -n 's/.* checksum \(0x[0-9a-f]*\).*/\1/p' <<<"$out")
  retired=$(sed -n 's/.*emu vCPU 0: \([0-9]*\) instructions retired.*/\1/p' "$err")
  [ -n "$retired" ] || { echo "  stderr of bench=$1 iterations=$2:" >&2; sed 's/^/    /' "$err" >&2; }
  rm -f "$err"
  echo "$status ${loop:-?} ${checksum:-?} ${retired:-?}"
}

for w in alu chase call crc tlb; do
  read -r s0 _ _ r0 < <(run "$w" 0)
  read -r s1 loop sum r1 < <(run "$w" "$iterations")
  if [ "$s0" = 33 ] && [ "$s1" = 33 ] && [[ $r0 =~ ^[0-9]+$ && $r1 =~ ^[0-9]+$ && $loop =~ ^[0-9]+$ ]] &&
    [ $((r1 - r0)) -eq "$loop" ]; then
    echo "ok   $w: $iterations iterations retired $((r1 - r0)) instructions = the loop's $loop (checksum $sum)"
    passed=$((passed + 1))
  else
    echo "FAIL $w: status $s0/$s1 (33 = pass), retired $r0 -> $r1, the loop says $loop"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
