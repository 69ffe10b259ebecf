// virtio-scsi and its CD-ROM on hostile input. The device must answer every
// chain or mark itself needs-reset, never crash, never touch memory outside
// guest RAM or read outside the image, and never write it.
//
// Input: [0] log2 queue size (mod 9), [1] bits: 1 INDIRECT_DESC, 2
// EVENT_IDX, 4 the driver writes a cdb_size, 8 a sense_size; [2] that
// cdb_size, [3] that sense_size; [4..19] a CDB run straight on the drive
// with [20..23] as the data-in room (the ATAPI path); the rest is guest RAM
// (control queue's descriptors at 0, rings at 0x1000/0x2000, the request
// queue's at 0x4000/0x5000/0x6000, buffers anywhere in the 64 KiB).
#include <poll.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "devices/cdrom/testing/memory_image.h"
#include "devices/virtio/scsi/virtio_scsi.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/virtio_constants.h"
#include "fuzz/fuzz_input.h"

using namespace hostvisor;
using hostvisor::fuzz::take;

namespace {
constexpr uint64_t kRamSize = 64 * 1024;
constexpr uint32_t kSectors = 24;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory memory = std::move(GuestMemory::create({{GuestAddress(0), kRamSize}})).value();
  const uint8_t log2_size = take<uint8_t>(data, size);
  const uint8_t bits = take<uint8_t>(data, size);
  const uint8_t cdb_size = take<uint8_t>(data, size);
  const uint8_t sense_size = take<uint8_t>(data, size);
  uint8_t cdb[16];
  for (auto& b : cdb) b = take<uint8_t>(data, size);
  const uint32_t room = take<uint32_t>(data, size);

  auto image = std::make_shared<testing::MemoryImage>(testing::patterned_sectors(kSectors));
  // The drive alone: any CDB, any room; the sink checks what it is handed.
  {
    auto drive = std::move(MmcCdrom::create(image)).value();
    uint64_t highest = 0;
    const auto outcome = drive->execute(std::span<const uint8_t>(cdb, 1 + cdb[15] % 16), room % (1 << 20),
                                        [&](uint64_t offset, std::span<const uint8_t> bytes) {
                                          highest = std::max<uint64_t>(highest, offset + bytes.size());
                                          return true;
                                        });
    if (highest > room % (1 << 20) || outcome.transferred > highest) __builtin_trap();
  }

  (void)memory.fill(GuestAddress(0), 0, kRamSize);
  (void)memory.write(GuestAddress(0), std::span(data, size < kRamSize ? size : kRamSize));
  VirtioScsiCdrom device(std::move(MmcCdrom::create(image)).value());
  if (bits & 4) {
    const uint32_t value = cdb_size;
    device.write_config(virtio_scsi::kConfigCdbSizeOffset, std::span(reinterpret_cast<const uint8_t*>(&value), 4));
  }
  if (bits & 8) {
    const uint32_t value = sense_size;
    device.write_config(virtio_scsi::kConfigSenseSizeOffset, std::span(reinterpret_cast<const uint8_t*>(&value), 4));
  }
  uint64_t features = device.device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
  if (!(bits & 1)) features &= ~virtio::feature_bit(virtio::kFeatureIndirectDesc);
  if (!(bits & 2)) features &= ~virtio::feature_bit(virtio::kFeatureEventIdx);
  const uint16_t queue_size = static_cast<uint16_t>(1u << (log2_size % 8));
  Virtqueue queues[3];
  const uint64_t bases[3] = {0, 0x8000, 0x4000};
  for (int q : {0, 2}) {
    const VirtqueueLayout layout{queue_size, GuestAddress(bases[q]), GuestAddress(bases[q] + 0x1000),
                                 GuestAddress(bases[q] + 0x2000)};
    auto created = Virtqueue::create(memory, layout, features);
    if (!created) __builtin_trap();  // fixed, valid layouts
    queues[q] = std::move(created).value();
  }
  bool enabled[3] = {true, false, true};
  testing::RecordingVirtioInterrupt interrupt;
  if (!device.activate(VirtioActivation{&memory, features, queues, enabled, &interrupt})) __builtin_trap();
  for (int round = 0; round < 3; ++round) {
    for (uint16_t q : {0, 1, 2})
      if (!device.process_queue(q)) __builtin_trap();  // guest errors are signalled, never returned
    pollfd rescheduled{device.reschedule_fd(), POLLIN, 0};
    if (::poll(&rescheduled, 1, 0) == 1) device.run_rescheduled();
  }
  uint8_t config[16];
  device.read_config(sense_size % 48, config);
  device.reset();
  return 0;
}
