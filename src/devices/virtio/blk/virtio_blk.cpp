#include "devices/virtio/blk/virtio_blk.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "block/image_open.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

using namespace virtio_blk;

namespace {

// Host views of the bytes [offset, offset + length) of `buffers`, for one
// request's I/O only (never kept). Virtqueue::pop checked every buffer lies in
// RAM, so a failure here means RAM changed underneath.
Result<std::vector<iovec>> guest_iov(const GuestMemory& memory, std::span<const VirtioBuffer> buffers, uint64_t offset,
                                     uint64_t length) {
  std::vector<iovec> iov;
  for (const auto& b : buffers) {
    if (length == 0) break;
    if (offset >= b.length) {
      offset -= b.length;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(b.length - offset, length);
    std::span<uint8_t> view = HV_TRY(memory.slice(b.address + offset, n));
    iov.push_back(iovec{view.data(), view.size()});
    length -= n;
    offset = 0;
  }
  if (length != 0) return Error(ErrorCode::kInternal, "virtio-blk data range runs past the chain");
  return iov;
}

}  // namespace

VirtioBlk::VirtioBlk(std::shared_ptr<block::BlockDevice> disk, VirtioBlkOptions options)
    : VirtioDeviceCore(1, options.queue_size),
      disk_(std::move(disk)),
      options_(std::move(options)),
      capacity_(disk_->virtual_size() >> kSectorShift),
      read_only_(options_.read_only || disk_->read_only()) {
  if (options_.serial.size() > kIdBytes) options_.serial.resize(kIdBytes);
}

Result<std::shared_ptr<VirtioBlk>> VirtioBlk::open(const block::DiskOption& disk, std::string serial) {
  auto image = block::open_image(disk.path, disk.open_options());
  if (!image) return image.error().with_context("disk " + disk.path);
  VirtioBlkOptions options;
  options.serial = std::move(serial);
  options.read_only = disk.read_only;
  options.discard = disk.discard;
  return std::make_shared<VirtioBlk>(std::shared_ptr<block::BlockDevice>(std::move(image).value()), options);
}

VirtioBlk::~VirtioBlk() {
  std::lock_guard lock(mutex_);
  while (disk_->requests_in_flight() > 0) disk_->poll_completions(true);
}

uint32_t VirtioBlk::device_type() const { return virtio::kDeviceBlock; }

uint64_t VirtioBlk::device_features() const {
  uint64_t f = virtio::feature_bit(virtio::kFeatureIndirectDesc) | virtio::feature_bit(virtio::kFeatureEventIdx) |
               virtio::feature_bit(kFeatureSegMax) | virtio::feature_bit(kFeatureBlockSize) |
               virtio::feature_bit(kFeatureFlush);
  if (read_only_) {
    f |= virtio::feature_bit(kFeatureReadOnly);
  } else {
    // Both change the disk: pointless to offer on a read-only one.
    if (options_.discard) f |= virtio::feature_bit(kFeatureDiscard);
    if (options_.write_zeroes) f |= virtio::feature_bit(kFeatureWriteZeroes);
  }
  return f;
}

bool VirtioBlk::offered(unsigned feature) const { return device_features() & virtio::feature_bit(feature); }

DiskLimits VirtioBlk::limits() const {
  return DiskLimits{capacity_,          read_only_,          offered(kFeatureDiscard), offered(kFeatureWriteZeroes),
                    kMaxDiscardSectors, kMaxDiscardSegments, kMaxWriteZeroesSectors,   kMaxWriteZeroesSegments};
}

void VirtioBlk::read_config(uint64_t offset, std::span<uint8_t> data) {
  Config c{};
  c.capacity = capacity_;
  // Two descriptors of every chain carry the header and the status.
  c.seg_max = queue_max_size(0) > 2 ? queue_max_size(0) - 2u : 1u;
  c.blk_size = kSectorSize;
  c.num_queues = 1;
  if (offered(kFeatureDiscard)) {
    c.max_discard_sectors = kMaxDiscardSectors;
    c.max_discard_seg = kMaxDiscardSegments;
    c.discard_sector_alignment = kDiscardSectorAlignment;
  }
  if (offered(kFeatureWriteZeroes)) {
    c.max_write_zeroes_sectors = kMaxWriteZeroesSectors;
    c.max_write_zeroes_seg = kMaxWriteZeroesSegments;
    // The formats' write_zeroes may deallocate (qcow2 zero clusters, raw punch holes).
    c.write_zeroes_may_unmap = 1;
  }
  read_config_bytes(c, offset, data);
}

uint64_t VirtioBlk::requests_completed() const {
  std::lock_guard lock(mutex_);
  return completed_;
}

VirtioBlk::IoCounts VirtioBlk::io_counts() const {
  std::lock_guard lock(mutex_);
  return io_counts_;
}

Result<void> VirtioBlk::quiesce() {
  run_turn([this] {
    // A request still running writes guest RAM; a snapshot must not be
    // taken under it. Held flushes are submitted as their writes finish.
    for (;;) {
      poll_and_answer();
      if (disk_->requests_in_flight() == 0 && held_flushes_.empty()) break;
      disk_->poll_completions(true);
    }
  });
  return ok();
}

Result<void> VirtioBlk::replace_disk(std::shared_ptr<block::BlockDevice> disk) {
  std::lock_guard lock(mutex_);
  if (disk->virtual_size() >> kSectorShift != capacity_)
    return Error(ErrorCode::kInvalidArgument, "virtio-blk: the new image's size differs from the disk's");
  if (disk_->requests_in_flight() > 0 || !held_flushes_.empty())
    return Error(ErrorCode::kBusy, "virtio-blk: requests still in flight on the old image");
  if (disk->read_only() && !read_only_)
    return Error(ErrorCode::kInvalidArgument, "virtio-blk: the new image is read-only");
  disk_ = std::move(disk);
  return ok();
}

void VirtioBlk::on_reset() {
  // Requests in flight write into guest RAM: they must finish before the
  // driver gets its memory back. Their answers are dropped with the rings.
  while (disk_->requests_in_flight() > 0) disk_->poll_completions(true);
  finished_.clear();
  held_flushes_.clear();  // never submitted; dropped with the rings
  writes_in_flight_.clear();
}

bool VirtioBlk::answer(const DescriptorChain& chain, uint8_t status, uint64_t data_written) {
  const uint64_t status_at = chain.writable_bytes() - 1;
  auto wrote = chain.write(memory(), status_at, std::span(&status, 1));
  if (!wrote || *wrote != 1) {
    // pop() checked the buffer lies in RAM; the guest's RAM map changed under it.
    fail_guest_misuse(wrote ? Error(ErrorCode::kGuest, "status byte vanished") : wrote.error());
    return false;
  }
  // data_written <= writable_bytes - 1 < 256 MiB (the chain limit).
  if (!complete(0, chain, data_written + 1)) return false;
  ++completed_;
  return true;
}

void VirtioBlk::serve_queue(uint16_t) {
  bool submitted = false;
  while (auto chain = next_chain(0)) {
    auto request = parse_request(memory(), *chain, limits());
    if (!request) {
      fail_guest_misuse(request.error());
      break;
    }
    if (execute(*chain, *request)) submitted = true;
    if (!running()) break;
  }
  // Also what hands batched submissions (io_uring) to the kernel.
  if (submitted) poll_and_answer();
}

bool VirtioBlk::execute(const DescriptorChain& chain, const Request& request) {
  if (const auto* read = std::get_if<ReadRequest>(&request)) return transfer(chain, read->sector, read->length, false);
  if (const auto* write = std::get_if<WriteRequest>(&request))
    return transfer(chain, write->sector, write->length, true);
  if (std::holds_alternative<FlushRequest>(request)) return flush(chain);
  if (const auto* get = std::get_if<GetIdRequest>(&request)) {
    get_id(chain, get->room);
    return false;
  }
  if (const auto* segments = std::get_if<SegmentsRequest>(&request)) return discard_or_write_zeroes(chain, *segments);
  answer(chain, std::get<RejectedRequest>(request).status, 0);
  return false;
}

int VirtioBlk::completion_fd() const { return disk_->notify_fd(); }

void VirtioBlk::process_completions() {
  run_turn([this] {
    // Clear the wake-up first, so a completion that lands after the poll below
    // makes the fd readable again instead of being missed.
    uint64_t count;
    while (::read(disk_->notify_fd(), &count, sizeof count) > 0) {
    }
    poll_and_answer();
  });
}

void VirtioBlk::poll_and_answer() {
  // The completions only record their result (they run inside this call,
  // under the lock); the answers go out below.
  disk_->poll_completions(false);
  // Writes that just completed may free held flushes. They are submitted
  // here rather than from a completion, which runs inside the block layer's
  // poll; their own completion wakes the event loop again. The block layer
  // may batch submissions until its next poll (io_uring), so poll again to
  // hand them over: an event loop waiting for their completion would
  // otherwise wait forever. That poll may complete more writes and free
  // more flushes, hence the loop (it ends: each turn submits a held flush).
  while (release_flushes()) disk_->poll_completions(false);
  auto finished = std::move(finished_);
  finished_.clear();
  // Not running (reset, or the driver broke the ring): no ring to answer into.
  if (!running()) return;
  for (auto& request : finished) {
    uint8_t status = kStatusOk;
    if (!request->result.ok()) {
      HV_LOG_WARN_LIMITED("virtio-blk: request failed on the disk: {}", request->result.error().message());
      status = kStatusIoError;
    }
    // A failed read may still have filled some of the buffers: they count as written.
    if (!answer(request->chain, status, request->data_bytes)) break;
  }
}

bool VirtioBlk::submit(const DescriptorChain& chain, std::vector<block::BlockRequest> requests, uint64_t data_bytes) {
  if (requests.empty()) {
    answer(chain, kStatusOk, data_bytes);
    return false;
  }
  auto in_flight = std::make_shared<InFlight>();
  in_flight->chain = chain;
  in_flight->data_bytes = data_bytes;
  in_flight->remaining = requests.size();
  if (requests.front().op != block::BlockOp::kRead && requests.front().op != block::BlockOp::kFlush) {
    in_flight->write_seq = next_write_seq_++;
    writes_in_flight_.insert(*in_flight->write_seq);
  }
  for (auto& request : requests) {
    // Completions run inside disk_->poll_completions(), which is only called
    // with mutex_ held, so they may touch the device's state.
    disk_->submit(std::move(request), [this, in_flight](Result<void> result) {
      if (!result && in_flight->result.ok()) in_flight->result = std::move(result);
      if (--in_flight->remaining > 0) return;
      if (in_flight->write_seq) writes_in_flight_.erase(*in_flight->write_seq);
      finished_.push_back(in_flight);
    });
  }
  return true;
}

bool VirtioBlk::flush(const DescriptorChain& chain) {
  ++io_counts_.flush_ops;
  if (writes_in_flight_.empty()) {
    std::vector<block::BlockRequest> flush;
    flush.push_back(block::BlockRequest{block::BlockOp::kFlush, 0, {}, 0});
    return submit(chain, std::move(flush), 0);
  }
  held_flushes_.push_back(HeldFlush{chain, next_write_seq_});
  return true;
}

bool VirtioBlk::release_flushes() {
  // Flushes are held in order of `after`, so only the front can be free.
  bool released = false;
  while (!held_flushes_.empty() &&
         (writes_in_flight_.empty() || *writes_in_flight_.begin() >= held_flushes_.front().after)) {
    std::vector<block::BlockRequest> flush;
    flush.push_back(block::BlockRequest{block::BlockOp::kFlush, 0, {}, 0});
    submit(held_flushes_.front().chain, std::move(flush), 0);
    held_flushes_.pop_front();
    released = true;
  }
  return released;
}

bool VirtioBlk::transfer(const DescriptorChain& chain, uint64_t sector, uint64_t length, bool is_write) {
  if (length == 0) {
    answer(chain, kStatusOk, 0);
    return false;
  }
  auto iov = is_write ? guest_iov(memory(), chain.readable(), sizeof(RequestHeader), length)
                      : guest_iov(memory(), chain.writable(), 0, length);
  if (!iov) {
    answer(chain, kStatusIoError, 0);
    return false;
  }
  if (is_write) {
    ++io_counts_.write_ops;
    io_counts_.write_bytes += length;
  } else {
    ++io_counts_.read_ops;
    io_counts_.read_bytes += length;
  }
  std::vector<block::BlockRequest> request;
  request.push_back(block::BlockRequest{is_write ? block::BlockOp::kWrite : block::BlockOp::kRead,
                                        sector << kSectorShift, std::move(*iov), 0});
  return submit(chain, std::move(request), is_write ? 0 : length);
}

void VirtioBlk::get_id(const DescriptorChain& chain, uint64_t room) {
  uint8_t id[kIdBytes] = {};
  std::memcpy(id, options_.serial.data(), std::min<size_t>(options_.serial.size(), kIdBytes));
  auto wrote = chain.write(memory(), 0, std::span<const uint8_t>(id, room));
  if (!wrote) {
    answer(chain, kStatusIoError, 0);
    return;
  }
  answer(chain, kStatusOk, *wrote);
}

bool VirtioBlk::discard_or_write_zeroes(const DescriptorChain& chain, const SegmentsRequest& request) {
  // One block request per segment; the guest request is answered when the
  // last finishes, IOERR if any failed.
  std::vector<block::BlockRequest> requests;
  for (const auto& s : request.segments) {
    if (s.num_sectors == 0) continue;
    // UNMAP lets write-zeroes deallocate (a hole punch); without it the
    // image zeroes in place where it can.
    requests.push_back(
        block::BlockRequest{request.write_zeroes ? block::BlockOp::kWriteZeroes : block::BlockOp::kDiscard,
                            s.sector << kSectorShift,
                            {},
                            uint64_t{s.num_sectors} << kSectorShift,
                            request.write_zeroes && (s.flags & kSegmentFlagUnmap) != 0});
  }
  return submit(chain, std::move(requests), 0);
}

}  // namespace hostvisor
