#!/usr/bin/env bash
# A restore through the daemon's API with {"verify": true} checks the
# snapshot's memory checksums before the guest runs: on a snapshot of the
# vmgenid test kernel (software CPU) with one byte of guest RAM flipped in
# its memory file, the restore fails and names the chunk; without verify
# the (map) restore goes on, as `run --restore` does.
# Usage: restore_verify_test.sh HOSTVISOR GUESTS_DIR
set -euo pipefail
HOSTVISOR=$1
GUESTS=$2
. "$(dirname "$0")/library_env.sh" hv-restore-verify
. "$(dirname "$0")/api_client.sh"

expect_status "create" 201 "$(api POST /v1/vms "{\"name\":\"gen\",\"kernel\":\"$GUESTS/vmgenid.elf64\",\"memory\":\"64M\",\"accel\":\"emu\",\"data_disk_bytes\":0}")"
expect_status "start" 200 "$(api POST /v1/vms/gen/start)"
for _ in $(seq 300); do grep -q "vmgenid ready" "$LIB/vms/gen/logs/console.log" 2>/dev/null && break; sleep 0.1; done
expect_status "snapshot" 201 "$(api POST /v1/vms/gen/snapshots '{"name":"s1"}')"
expect_status "restore with verify on a whole snapshot" 200 "$(api POST /v1/vms/gen/snapshots/s1/restore '{"verify":true}')"

# One byte of the kernel's data (the first data extent of the memory file:
# guest RAM the kernel was loaded into), and the chunk it is in (2 MiB).
chunk=$(python3 - "$LIB/vms/gen/snapshots/s1/memory" <<'PY'
import os, sys
path = sys.argv[1]
os.chmod(path, os.stat(path).st_mode | 0o200)
fd = os.open(path, os.O_RDWR)
at = os.lseek(fd, 0, os.SEEK_DATA) + 100
byte = os.pread(fd, 1, at)[0] ^ 0x01
os.pwrite(fd, bytes([byte]), at)
print(at // (2 << 20))
PY
)
expect_status "restore with verify on a flipped byte fails, naming the chunk" 500 \
  "$(api POST /v1/vms/gen/snapshots/s1/restore '{"verify":true}')" "the memory file's chunk $chunk ("
expect_status "without verify the map restore goes on" 200 "$(api POST /v1/vms/gen/snapshots/s1/restore)"
expect_status "kill" 200 "$(api POST /v1/vms/gen/kill)"
[ "$failures" -eq 0 ] || { echo "$failures failed"; tail -20 "$LIB/vms/gen/logs/hostvisor.log"; exit 1; }
