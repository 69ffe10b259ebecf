// virtio block device (virtio 1.2, 5.2) over a BlockDevice (raw, qcow2).
//
// One request queue. Each chain is parsed into a typed request
// (virtio_blk_request.h), then executed here. Requests that touch the disk
// (read, write, flush, discard, write-zeroes) go to the block layer's
// asynchronous path (io_uring or the format's worker thread, which is then the
// only thread using the image); the notifying thread never waits for the
// disk. They are answered when the event loop sees completion_fd() readable
// and calls process_completions(). Requests answered without the disk
// (rejects, GET_ID, empty transfers) are answered in the same turn.
//
// Guest errors: a request the device can answer but not serve gets IOERR or
// UNSUPP in its status byte and the VM goes on. A chain without a writable
// status byte cannot be answered: DEVICE_NEEDS_RESET (VirtioDeviceCore).
// Host errors: a failed disk request is an IOERR for that request only; the
// device keeps serving.
//
// Flush ordering: a flush must make durable every write the driver issued
// before it, but the block layer may run requests in parallel (io_uring's
// fsync does not wait for writes still in flight), so a flush is held back
// until every write, discard and write-zeroes submitted before it has
// completed, and only then submitted.
// Requests after a flush are not held: a flush promises nothing about them.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "block/block_device.h"
#include "block/disk_option.h"
#include "devices/virtio/blk/virtio_blk_request.h"
#include "devices/virtio/blk/virtio_blk_spec.h"
#include "devices/virtio/virtio_device_core.h"

namespace hostvisor {

struct VirtioBlkOptions {
  // Answer to GET_ID (the guest's /sys/block/vdX/serial); longer than 20 bytes is cut.
  std::string serial;
  // Offer VIRTIO_BLK_F_RO; also implied when the image was opened read-only.
  bool read_only = false;
  // Offer DISCARD and pass guest discards to the image (--disk discard=on).
  bool discard = false;
  // Offer WRITE_ZEROES (every image format implements it).
  bool write_zeroes = true;
  uint16_t queue_size = 256;
};

class VirtioBlk : public VirtioDeviceCore {
 public:
  // Limits advertised in the configuration space and enforced per request.
  static constexpr uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB per segment
  static constexpr uint32_t kMaxDiscardSegments = 32;
  static constexpr uint32_t kDiscardSectorAlignment = 8;  // 4 KiB, the hole-punch granule
  static constexpr uint32_t kMaxWriteZeroesSectors = 1u << 22;
  static constexpr uint32_t kMaxWriteZeroesSegments = 32;

  // `disk` is shared with whoever else needs it (snapshots, the API); the
  // device only uses it between activate() and reset().
  VirtioBlk(std::shared_ptr<block::BlockDevice> disk, VirtioBlkOptions options);
  // Waits for asynchronous requests still in flight (their callbacks point here).
  ~VirtioBlk() override;

  // Opens the image a `--disk` option names (format, cache mode, read-only,
  // discard as it says) and makes the device for it; `serial` answers GET_ID.
  static Result<std::shared_ptr<VirtioBlk>> open(const block::DiskOption& disk, std::string serial);

  std::string_view name() const override { return "blk"; }
  uint32_t device_type() const override;
  uint64_t device_features() const override;
  uint32_t config_size() const override { return sizeof(virtio_blk::Config); }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;

  // Readable when submitted requests have finished; the event loop then
  // calls process_completions(), which also clears it.
  int completion_fd() const;
  void process_completions();

  uint64_t capacity_sectors() const { return capacity_; }
  bool read_only() const { return read_only_; }
  // Counters, for tests and statistics.
  uint64_t requests_completed() const;
  // Guest reads, writes and flushes submitted to the image (a request the
  // device refused is not counted). Thread-safe.
  struct IoCounts {
    uint64_t read_ops = 0, write_ops = 0, read_bytes = 0, write_bytes = 0, flush_ops = 0;
  };
  IoCounts io_counts() const;

  // Waits for every request in flight (and every held flush) and answers it.
  Result<void> quiesce() override;

  // The image the device serves (snapshots flush and freeze it).
  block::BlockDevice& disk() { return *disk_; }
  // Serves `disk` from now on, which must have the same size (a snapshot
  // froze the old image and the guest goes on in an overlay on top of it).
  // Only while quiesced: nothing may be in flight on the old one.
  Result<void> replace_disk(std::shared_ptr<block::BlockDevice> disk);

 private:
  void on_reset() override;
  void serve_queue(uint16_t queue) override;

  // Answers at once or submits to the disk; true if it submitted.
  bool execute(const DescriptorChain& chain, const virtio_blk::Request& request);
  bool transfer(const DescriptorChain& chain, uint64_t sector, uint64_t length, bool is_write);
  void get_id(const DescriptorChain& chain, uint64_t room);
  bool discard_or_write_zeroes(const DescriptorChain& chain, const virtio_blk::SegmentsRequest& request);
  // Submits the block requests that make up one guest request (several for
  // a multi-segment discard); it is answered when the last one finishes.
  bool submit(const DescriptorChain& chain, std::vector<block::BlockRequest> requests, uint64_t data_bytes);
  bool flush(const DescriptorChain& chain);
  // Submits the held flushes whose writes have all completed; true if any was.
  bool release_flushes();
  // Polls the block layer and answers finished requests.
  void poll_and_answer();
  // Writes the status byte and returns the chain; false if that failed.
  bool answer(const DescriptorChain& chain, uint8_t status, uint64_t data_written);
  bool offered(unsigned feature) const;
  virtio_blk::DiskLimits limits() const;

  std::shared_ptr<block::BlockDevice> disk_;
  VirtioBlkOptions options_;
  uint64_t capacity_;
  bool read_only_;

  // --- guarded by the core's mutex_
  uint64_t completed_ = 0;
  IoCounts io_counts_;
  // An asynchronous request: its chain (the guest buffers its iovecs point
  // into stay the driver's until it is answered) and, once done, its result.
  struct InFlight {
    DescriptorChain chain;
    uint64_t data_bytes = 0;
    std::optional<uint64_t> write_seq;  // set for requests that change the disk
    size_t remaining = 1;               // block requests still running (one per segment)
    Result<void> result = ok();         // the first failure, if any
  };
  // A flush waiting for the writes with sequence numbers below `after`.
  struct HeldFlush {
    DescriptorChain chain;
    uint64_t after;
  };
  std::vector<std::shared_ptr<InFlight>> finished_;
  uint64_t next_write_seq_ = 0;
  std::set<uint64_t> writes_in_flight_;
  std::deque<HeldFlush> held_flushes_;
};

}  // namespace hostvisor
