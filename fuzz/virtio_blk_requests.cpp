// virtio-blk request handling on hostile guest memory: random descriptor
// tables, rings and request headers against a small in-memory disk. The
// device must answer or mark itself needs-reset, and never crash, read or
// write outside guest RAM or the disk.
//
// Input: [0] log2 queue size (mod 9), [1] bits: 1 INDIRECT_DESC, 2 EVENT_IDX,
// 4 read-only, 8 discard on, 16 unused (it chose the synchronous path the
// device no longer has), 32 a raw image on a memfd through the block layer's
// own asynchronous path instead of the in-memory disk on the default worker,
// 64 that raw image on the thread-pool engine instead of io_uring; [2..3]
// serial length; the rest is guest RAM (descriptor table at 0, driver area at
// 0x1000, device area at 0x2000, buffers anywhere in the 64 KiB).
//
// The requests submitted in one round are completed partly before the next
// round (the event loop runs when it runs), turns the device rescheduled run
// between rounds, and every request is driven to its answer before the
// device is reset. The avail ring is guest RAM too, so heads repeated while
// in flight come for free.
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "block/block_device.h"
#include "block/host_file.h"
#include "block/raw/image.h"
#include "devices/virtio/blk/virtio_blk.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
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

using hostvisor::fuzz::take;

// A raw image over an anonymous memory file: real engine requests (reads,
// writes, fdatasync, hole punching; shmem has no ZERO_RANGE, so write-zeroes
// without UNMAP also takes the fallback of writing zeros).
std::shared_ptr<block::BlockDevice> memfd_raw_image(bool read_only, bool thread_pool) {
  int fd = memfd_create("virtio-blk-fuzz", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, kDiskSize) != 0) __builtin_trap();
  block::HostFileOptions o;
  o.writable = !read_only;
  o.engine = thread_pool ? block::EngineKind::kThreadPool : block::EngineKind::kAuto;
  o.queue_depth = 8;  // small, so a full ring is exercised too
  auto file = block::HostFile::open("/proc/self/fd/" + std::to_string(fd), o);
  close(fd);
  if (!file) __builtin_trap();
  auto image = block::RawImage::open(std::move(file).value());
  if (!image) __builtin_trap();
  return std::shared_ptr<block::BlockDevice>(std::move(image).value());
}

// The event loop's part: waits for the completion fd and lets the device
// answer. `all`: until nothing is in flight (bounded, so a lost completion
// shows as a trap, not a hang).
void run_completions(VirtioBlk& device, block::BlockDevice& disk, bool all) {
  for (int i = 0; i < 100000; ++i) {
    if (disk.requests_in_flight() == 0) return;
    pollfd p{device.completion_fd(), POLLIN, 0};
    int ready = ::poll(&p, 1, all ? 1000 : 0);
    device.process_completions();
    if (!all) return;
    if (ready == 0 && disk.requests_in_flight() > 0) __builtin_trap();  // a second without progress
  }
  if (all) __builtin_trap();
}

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
  std::shared_ptr<block::BlockDevice> disk;
  if (bits & 32) {
    disk = memfd_raw_image(options.read_only, bits & 64);
  } else {
    disk = std::make_shared<MemoryDisk>(options.read_only);
  }
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
  testing::RecordingVirtioInterrupt interrupt;
  if (!device.activate(VirtioActivation{&memory, features, queues, enabled, &interrupt})) __builtin_trap();

  for (int round = 0; round < 4; ++round) {
    if (!device.process_queue(0)) __builtin_trap();  // guest errors are signalled, never returned
    run_completions(device, *disk, round == 3);
    pollfd rescheduled{device.reschedule_fd(), POLLIN, 0};
    if (::poll(&rescheduled, 1, 0) == 1) device.run_rescheduled();
  }
  run_completions(device, *disk, true);
  if (disk->requests_in_flight() != 0) __builtin_trap();
  // Config space reads at any offset stay in bounds.
  uint8_t config[16];
  device.read_config(serial_length % 80, config);
  device.reset();
  return 0;
}
