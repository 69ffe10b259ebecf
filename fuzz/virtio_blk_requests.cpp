// virtio-blk request handling on hostile guest memory: random descriptor
// tables, rings and request headers against a small in-memory disk. The
// device must answer or mark itself needs-reset, and never crash, read or
// write outside guest RAM or the disk.
//
// Input: [0] log2 queue size (mod 9), [1] bits: 1 INDIRECT_DESC, 2 EVENT_IDX,
// 4 read-only, 8 discard on; [2..3] serial length; the rest is guest RAM
// (descriptor table at 0, driver area at 0x1000, device area at 0x2000,
// buffers anywhere in the 64 KiB).
#include <cstdint>
#include <cstring>
#include <vector>

#include "block/block_device.h"
#include "devices/virtio/blk/virtio_blk.h"
#include "devices/virtio/virtio_constants.h"
#include "fuzz/fuzz_input.h"

using namespace hostvisor;

namespace {

constexpr uint64_t kRamSize = 64 * 1024;
constexpr uint64_t kDiskSize = 32 * 1024;

// A disk in host memory; the range checks are the block layer's own.
class MemoryDisk : public block::BlockDevice {
 public:
  explicit MemoryDisk(bool read_only) : bytes_(kDiskSize), read_only_(read_only) {}
  const char* format_name() const override { return "memory"; }
  uint64_t virtual_size() const override { return bytes_.size(); }
  bool read_only() const override { return read_only_; }
  Result<void> readv(uint64_t offset, std::span<const iovec> iov) override {
    HV_TRY(check_range(offset, total(iov)));
    for (const auto& v : iov) {
      std::memcpy(v.iov_base, bytes_.data() + offset, v.iov_len);
      offset += v.iov_len;
    }
    return ok();
  }
  Result<void> writev(uint64_t offset, std::span<const iovec> iov) override {
    if (read_only_) __builtin_trap();  // the device must refuse writes itself
    HV_TRY(check_range(offset, total(iov)));
    for (const auto& v : iov) {
      std::memcpy(bytes_.data() + offset, v.iov_base, v.iov_len);
      offset += v.iov_len;
    }
    return ok();
  }
  Result<void> flush() override { return ok(); }
  Result<void> discard(uint64_t offset, uint64_t length) override {
    if (read_only_) __builtin_trap();
    HV_TRY(check_range(offset, length));
    std::memset(bytes_.data() + offset, 0, length);
    return ok();
  }
  Result<void> write_zeroes(uint64_t offset, uint64_t length) override { return discard(offset, length); }

 private:
  static uint64_t total(std::span<const iovec> iov) {
    uint64_t n = 0;
    for (const auto& v : iov) n += v.iov_len;
    return n;
  }
  std::vector<uint8_t> bytes_;
  bool read_only_;
};

class CountingInterrupt : public VirtioInterrupt {
 public:
  void signal_used(uint16_t) override { ++used; }
  void signal_config_change() override {}
  void signal_needs_reset(const Error&) override { ++needs_reset; }
  int used = 0, needs_reset = 0;
};

using hostvisor::fuzz::take;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory memory = std::move(GuestMemory::create({{GuestAddress(0), kRamSize}})).value();
  const uint8_t log2_size = take<uint8_t>(data, size);
  const uint8_t bits = take<uint8_t>(data, size);
  const uint16_t serial_length = take<uint16_t>(data, size);

  (void)memory.fill(GuestAddress(0), 0, kRamSize);
  (void)memory.write(GuestAddress(0), std::span(data, size < kRamSize ? size : kRamSize));

  VirtioBlkOptions options;
  options.serial.assign(serial_length % 40, 's');
  options.read_only = bits & 4;
  options.discard = bits & 8;
  options.queue_size = 256;
  auto disk = std::make_shared<MemoryDisk>(options.read_only);
  VirtioBlk device(disk, options);

  uint64_t features = device.device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
  if (!(bits & 1)) features &= ~virtio::feature_bit(virtio::kFeatureIndirectDesc);
  if (!(bits & 2)) features &= ~virtio::feature_bit(virtio::kFeatureEventIdx);
  const VirtqueueLayout layout{static_cast<uint16_t>(1u << (log2_size % 9)), GuestAddress(0), GuestAddress(0x1000),
                               GuestAddress(0x2000)};
  auto created = Virtqueue::create(memory, layout, features);
  if (!created) __builtin_trap();  // a fixed, valid layout
  Virtqueue queues[1] = {std::move(created).value()};
  bool enabled[1] = {true};
  CountingInterrupt interrupt;
  if (!device.activate(VirtioActivation{&memory, features, queues, enabled, &interrupt})) __builtin_trap();

  for (int round = 0; round < 4; ++round) {
    if (!device.process_queue(0)) __builtin_trap();  // guest errors are signalled, never returned
  }
  // Config space reads at any offset stay in bounds.
  uint8_t config[16];
  device.read_config(serial_length % 80, config);
  device.reset();
  return 0;
}
