/* What the integration tests and the test kernels agree on. Plain C so that
 * both the freestanding kernels and the C++ tests include it. */
#ifndef HOSTVISOR_TESTS_GUESTS_GUEST_CONTRACT_H
#define HOSTVISOR_TESTS_GUESTS_GUEST_CONTRACT_H

#include <stdint.h>

/* The command line the bootinfo test passes with --append. */
#define HVT_BOOTINFO_CMDLINE "hv-test-cmdline=42 foo"

/* The guest RAM the bootinfo test gives with --memory, in MiB, and how far
 * below it the usable RAM in the memory map may end up (firmware tables,
 * reserved holes). */
#define HVT_BOOTINFO_MEMORY_MIB 64u
#define HVT_BOOTINFO_MEMORY_SLACK_MIB 4u

/* The test initrd: a header followed by payload bytes. The kernel checks the
 * magic, that total_size equals the size the boot protocol reports, and the
 * checksum, so a truncated, shifted or mis-sized module is caught. */
#define HVT_INITRD_MAGIC 0x49545648u /* "HVTI" little-endian */
struct hvt_initrd_header {
  uint32_t magic;
  uint32_t total_size;    /* header + payload, in bytes */
  uint32_t payload_fnv1a; /* FNV-1a (32-bit) of the payload */
  uint32_t reserved;
};

static inline uint32_t hvt_fnv1a(const uint8_t* data, uint32_t size) {
  uint32_t hash = 2166136261u;
  for (uint32_t i = 0; i < size; i++) {
    hash ^= data[i];
    hash *= 16777619u;
  }
  return hash;
}

/* Bytes the uart test sends through the UART in loopback mode; they must
 * never show up on hostvisor's stdout. */
#define HVT_UART_LOOPBACK_TEXT "LOOPBACK-ONLY"

/* Exit values written to the debug-exit port 0xf4; hostvisor (and QEMU's
 * isa-debug-exit) end with status (value << 1) | 1. */
#define HVT_DEBUG_EXIT_PORT 0xf4
#define HVT_EXIT_PASS 0x10u /* status 33 */
#define HVT_EXIT_FAIL 0x11u /* status 35 */

/* The virtio_blk test: two disks of HVT_BLK_SECTORS sectors, the first
 * writable, the second read-only (hostvisor: --disk RW --disk RO,readonly=on;
 * QEMU: serial= set to the same names). The test fills both with
 * hvt_disk_byte(); the kernel checks two sectors of each, writes
 * HVT_BLK_WRITE_COUNT sectors from HVT_BLK_WRITE_SECTOR on the writable disk
 * with hvt_guest_byte() and flushes, and tries the same on the read-only disk,
 * which must answer IOERR and stay unchanged. hostvisor names its disks
 * "hostvisor-disk<N>" in --disk order. */
#define HVT_BLK_SECTORS 64u
#define HVT_BLK_READ_SECTOR 37u
#define HVT_BLK_WRITE_SECTOR 48u
#define HVT_BLK_WRITE_COUNT 2u
#define HVT_BLK_SERIAL_RW "hostvisor-disk0"
#define HVT_BLK_SERIAL_RO "hostvisor-disk1"

/* Byte `offset` of `sector` as the test writes it on disk `disk` (0 or 1):
 * every sector and both halves of a sector differ, so a read of the wrong
 * place is caught. */
static inline uint8_t hvt_disk_byte(uint32_t disk, uint64_t sector, uint32_t offset) {
  return (uint8_t)(sector * 13u + offset * 7u + (offset >> 8) * 53u + disk * 101u + 1u);
}
/* What the kernel writes: distinct from every hvt_disk_byte() pattern. */
static inline uint8_t hvt_guest_byte(uint64_t sector, uint32_t offset) {
  return (uint8_t)((sector * 29u + offset * 3u + (offset >> 8) * 17u) ^ 0xa5u);
}

/* The virtio_console test: the kernel sends this line twice through
 * transmitq0 (once as a two-descriptor chain, once as one buffer) and never
 * through the serial port. virtio_msix_smp sends it twice too, once per CPU
 * that takes the interrupt. */
#define HVT_VIRTIO_CONSOLE_TEXT "hvc0 says: hello through transmitq0\n"

/* The virtio_console_input test: the host types this line into the virtio
 * console (hostvisor --console virtio; QEMU's stdio chardev); the kernel
 * receives it through receiveq0 in 8-byte buffers and sends back
 * HVT_VIRTIO_CONSOLE_ECHO followed by what it received, through transmitq0. */
#define HVT_VIRTIO_CONSOLE_INPUT "typed into hvc0 by the host\n"
#define HVT_VIRTIO_CONSOLE_ECHO "hvc0 received: "

#endif
