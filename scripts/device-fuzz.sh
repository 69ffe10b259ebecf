#!/usr/bin/env bash
# `make fuzz`'s device fuzzer (fuzz-all.sh calls it last): long runs of the
# device_fuzz test kernel (tests/guests/scenarios/device_fuzz.c) against a
# machine with every device, seed after seed, through the device fuzzer test
# (tests/integration/device_fuzz_test.cpp), which checks each run: PASS exit
# status, no hang, RSS bounded, no sanitizer report, no log flood, host files
# outside the VM's scratch directory untouched.
#
# Three campaigns of FUZZ_SECONDS each (default 600):
#   emu       hostvisor on the software CPU, DEVICE_FUZZ_OPS ops a run (200000)
#   kvm       on KVM where /dev/kvm is usable, DEVICE_FUZZ_KVM_OPS (2000)
#   emu-asan  an ASan+UBSan hostvisor (-DHOSTVISOR_SANITIZE=address,undefined,
#             configured in BUILD-asan unless DEVICE_FUZZ_ASAN_BUILD says
#             where), DEVICE_FUZZ_ASAN_OPS (50000)
# Seeds start at DEVICE_FUZZ_SEED (default: from the clock, printed) and the
# layout (which devices sit on virtio-mmio) goes round with the seed. A
# failing seed is appended to BUILD/device-fuzz-failures.txt with its
# campaign, and its log kept in BUILD/device-fuzz-logs/; rerun one with
#   HV_DEVICE_FUZZ_SEED=N HV_DEVICE_FUZZ_LAYOUT=L HV_DEVICE_FUZZ_OPS=M \
#     BUILD/tests/integration/integration_tests --gtest_also_run_disabled_tests \
#     --gtest_filter=DeviceFuzzTest.DISABLED_OneRunFromTheEnvironment
# and add it to the test's short runs once fixed.
#
# Usage: scripts/device-fuzz.sh [BUILD]
set -euo pipefail
build=${1:-build}
seconds=${FUZZ_SECONDS:-600}
asan_build=${DEVICE_FUZZ_ASAN_BUILD:-$build-asan}
seed=${DEVICE_FUZZ_SEED:-$(date +%s)}

cmake --build "$build" --target hostvisor integration_tests hv_guest_kernels
if [ ! -f "$asan_build/CMakeCache.txt" ]; then
  compiler=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
  c_compiler=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
  cmake -S . -B "$asan_build" -G Ninja -DCMAKE_C_COMPILER="$c_compiler" -DCMAKE_CXX_COMPILER="$compiler" \
    -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DHOSTVISOR_SANITIZE=address,undefined
fi
cmake --build "$asan_build" --target hostvisor

tests="$build/tests/integration/integration_tests"
logs="$build/device-fuzz-logs"
failures="$build/device-fuzz-failures.txt"
mkdir -p "$logs"
status=0
# For the sanitized hostvisor: UBSan stops at its first report, as ASan does.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# campaign NAME ACCEL OPS HOSTVISOR RSS_BOUND_MIB
campaign() {
  local name=$1 accel=$2 ops=$3 hostvisor=$4 rss=$5
  local end=$((SECONDS + seconds)) runs=0 failed=0 s=$seed
  echo "== device fuzzer, $name: ${seconds}s of $ops-op runs from seed $s"
  while [ $SECONDS -lt $end ]; do
    local layout=$((s % 3)) log="$logs/$name-seed$s.log"
    if HV_DEVICE_FUZZ_SEED=$s HV_DEVICE_FUZZ_OPS=$ops HV_DEVICE_FUZZ_ACCEL=$accel HV_DEVICE_FUZZ_LAYOUT=$layout \
       HV_DEVICE_FUZZ_HOSTVISOR=$hostvisor HV_DEVICE_FUZZ_RSS_BOUND_MIB=$rss HV_DEVICE_FUZZ_TIMEOUT=900 \
       "$tests" --gtest_also_run_disabled_tests --gtest_filter=DeviceFuzzTest.DISABLED_OneRunFromTheEnvironment \
       >"$log" 2>&1; then
      rm -f "$log"
    else
      echo "!! $name: seed $s (layout $layout, $ops ops) failed: $log"
      echo "$name seed=$s layout=$layout ops=$ops" >>"$failures"
      failed=$((failed + 1))
      status=1
    fi
    runs=$((runs + 1))
    s=$((s + 1))
  done
  echo "== device fuzzer, $name: $runs runs, $failed failed"
}

campaign emu emu "${DEVICE_FUZZ_OPS:-200000}" "$build/src/cli/hostvisor" 128
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  campaign kvm kvm "${DEVICE_FUZZ_KVM_OPS:-2000}" "$build/src/cli/hostvisor" 128
else
  echo "!! device fuzzer: /dev/kvm is missing or not accessible: the kvm campaign did NOT run"
fi
# ASan's shadow memory and quarantine add to the RSS (hence its bound).
campaign emu-asan emu "${DEVICE_FUZZ_ASAN_OPS:-50000}" "$asan_build/src/cli/hostvisor" 1024
exit $status
