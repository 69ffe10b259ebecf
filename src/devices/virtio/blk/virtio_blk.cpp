#include "devices/virtio/blk/virtio_blk.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/log.h"
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
    : disk_(std::move(disk)),
      options_(std::move(options)),
      capacity_(disk_->virtual_size() >> kSectorShift),
      read_only_(options_.read_only || disk_->read_only()) {
  if (options_.serial.size() > kIdBytes) options_.serial.resize(kIdBytes);
  if (options_.queue_size == 0 || (options_.queue_size & (options_.queue_size - 1)) ||
      options_.queue_size > virtio::kMaxQueueSize)
    options_.queue_size = 256;
}

Result<std::shared_ptr<VirtioBlk>> VirtioBlk::open(const block::DiskOption& disk, std::string serial, bool async_io) {
  auto image = block::open_image(disk.path, disk.open_options());
  if (!image) return image.error().with_context("disk " + disk.path);
  VirtioBlkOptions options;
  options.serial = std::move(serial);
  options.read_only = disk.read_only;
  options.discard = disk.discard;
  options.async_io = async_io;
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

void VirtioBlk::read_config(uint64_t offset, std::span<uint8_t> data) {
  Config c{};
  c.capacity = capacity_;
  // Two descriptors of every chain carry the header and the status.
  c.seg_max = options_.queue_size > 2 ? options_.queue_size - 2u : 1u;
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
  const auto* bytes = reinterpret_cast<const uint8_t*>(&c);
  for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < sizeof c ? bytes[offset + i] : 0;
}

Result<void> VirtioBlk::activate(const VirtioActivation& activation) {
  if (!activation.memory || !activation.interrupt || activation.queues.size() != 1 || activation.enabled.size() != 1)
    return Error(ErrorCode::kInternal, "virtio-blk activated without its queue");
  std::lock_guard lock(mutex_);
  active_ = activation;
  failed_ = false;
  return ok();
}

void VirtioBlk::reset() {
  std::lock_guard lock(mutex_);
  // Requests in flight write into guest RAM: they must finish before the
  // driver gets its memory back. Their answers are dropped with the rings.
  while (disk_->requests_in_flight() > 0) disk_->poll_completions(true);
  finished_.clear();
  held_flushes_.clear();  // never submitted; dropped with the rings
  writes_in_flight_.clear();
  active_.reset();
  failed_ = false;
}

void VirtioBlk::fail_locked(const Error& error) {
  failed_ = true;
  active_->interrupt->signal_needs_reset(error.with_context("virtio-blk"));
}

bool VirtioBlk::answer_locked(const DescriptorChain& chain, Outcome outcome) {
  GuestMemory& memory = *active_->memory;
  const uint64_t status_at = chain.writable_bytes() - 1;
  auto wrote = chain.write(memory, status_at, std::span(&outcome.status, 1));
  if (!wrote) {
    fail_locked(wrote.error());
    return false;
  }
  // data_written <= writable_bytes - 1 < 256 MiB (the chain limit), so it fits.
  auto r = active_->queues[0].add_used(memory, chain, static_cast<uint32_t>(outcome.data_written + 1));
  if (!r) {
    fail_locked(r.error());
    return false;
  }
  ++completed_;
  return true;
}

void VirtioBlk::interrupt_locked() {
  auto notify = active_->queues[0].needs_interrupt(*active_->memory);
  if (!notify || *notify) active_->interrupt->signal_used(0);
}

Result<void> VirtioBlk::process_queue(uint16_t queue) {
  std::lock_guard lock(mutex_);
  if (!active_ || failed_ || queue != 0 || !active_->enabled[0]) return ok();
  GuestMemory& memory = *active_->memory;
  Virtqueue& q = active_->queues[0];
  bool used = false;
  bool submitted = false;
  for (;;) {
    auto popped = q.pop(memory);
    if (!popped) {
      fail_locked(popped.error());
      break;
    }
    if (!popped->has_value()) break;
    DescriptorChain& chain = **popped;
    if (chain.writable_bytes() == 0) {
      fail_locked(Error(ErrorCode::kGuest, "request at descriptor " + std::to_string(chain.head()) +
                                               " has no device-writable status byte, so it cannot be answered; the "
                                               "driver is broken or hostile"));
      break;
    }
    std::optional<Outcome> outcome = Outcome{kStatusIoError, 0};
    if (chain.readable_bytes() >= sizeof(RequestHeader)) {
      RequestHeader header{};
      auto got = chain.read(memory, 0, std::span(reinterpret_cast<uint8_t*>(&header), sizeof header));
      if (got && *got == sizeof header) outcome = serve(chain, header);
    }
    // Otherwise the header is missing, short or device-writable: the request
    // is malformed but answerable, so it gets IOERR.
    if (!outcome) {  // submitted: answered on completion
      submitted = true;
      continue;
    }
    if (!answer_locked(chain, *outcome)) break;
    used = true;
  }
  if (submitted && !failed_ && poll_and_answer_locked()) used = true;
  if (used && !failed_) interrupt_locked();
  return ok();
}

int VirtioBlk::completion_fd() const { return options_.async_io ? disk_->notify_fd() : -1; }

void VirtioBlk::process_completions() {
  std::lock_guard lock(mutex_);
  if (!options_.async_io) return;
  // Clear the wake-up first, so a completion that lands after the poll below
  // makes the fd readable again instead of being missed.
  uint64_t count;
  while (::read(disk_->notify_fd(), &count, sizeof count) > 0) {
  }
  if (poll_and_answer_locked()) interrupt_locked();
}

bool VirtioBlk::poll_and_answer_locked() {
  // Also what sends batched submissions (io_uring) to the kernel. The
  // completions only record their result (they run inside this call, under
  // the lock); the answers go out below.
  disk_->poll_completions(false);
  // Writes that just completed may free held flushes. They are submitted
  // here rather than from a completion, which runs inside the block layer's
  // poll; their own completion wakes the event loop again. The block layer
  // may batch submissions until its next poll (io_uring), so poll again to
  // hand them over: an event loop waiting for their completion would
  // otherwise wait forever. That poll may complete more writes and free
  // more flushes, hence the loop (it ends: each turn submits a held flush).
  while (release_flushes_locked()) disk_->poll_completions(false);
  if (!active_ || failed_) {
    finished_.clear();
    return false;
  }
  bool used = false;
  for (auto& request : finished_) {
    Outcome outcome{kStatusOk, request->data_bytes};
    if (!request->result.ok()) {
      HV_LOG_WARN("virtio-blk: asynchronous request failed: {}", request->result.error().message());
      outcome.status = kStatusIoError;
    }
    if (!answer_locked(request->chain, outcome)) break;
    used = true;
  }
  finished_.clear();
  return used && !failed_;
}

std::optional<VirtioBlk::Outcome> VirtioBlk::submit_locked(const DescriptorChain& chain,
                                                           std::vector<block::BlockRequest> requests,
                                                           uint64_t data_bytes) {
  auto in_flight = std::make_shared<InFlight>();
  in_flight->chain = chain;
  in_flight->data_bytes = data_bytes;
  in_flight->remaining = requests.size();
  if (requests.empty()) return Outcome{kStatusOk, data_bytes};
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
  return std::nullopt;
}

std::optional<VirtioBlk::Outcome> VirtioBlk::flush_locked(const DescriptorChain& chain) {
  if (writes_in_flight_.empty()) {
    std::vector<block::BlockRequest> flush;
    flush.push_back(block::BlockRequest{block::BlockOp::kFlush, 0, {}, 0});
    return submit_locked(chain, std::move(flush), 0);
  }
  held_flushes_.push_back(HeldFlush{chain, next_write_seq_});
  return std::nullopt;
}

bool VirtioBlk::release_flushes_locked() {
  // Flushes are held in order of `after`, so only the front can be free.
  bool released = false;
  while (!held_flushes_.empty() &&
         (writes_in_flight_.empty() || *writes_in_flight_.begin() >= held_flushes_.front().after)) {
    std::vector<block::BlockRequest> flush;
    flush.push_back(block::BlockRequest{block::BlockOp::kFlush, 0, {}, 0});
    submit_locked(held_flushes_.front().chain, std::move(flush), 0);
    held_flushes_.pop_front();
    released = true;
  }
  return released;
}

std::optional<VirtioBlk::Outcome> VirtioBlk::serve(const DescriptorChain& chain, const RequestHeader& header) {
  switch (header.type) {
    case kRequestIn: return transfer(chain, header, false);
    case kRequestOut: return transfer(chain, header, true);
    case kRequestFlush:
      if (options_.async_io) return flush_locked(chain);
      if (auto r = disk_->flush(); !r) {
        HV_LOG_WARN("virtio-blk: flush failed: {}", r.error().message());
        return Outcome{kStatusIoError, 0};
      }
      return Outcome{kStatusOk, 0};
    case kRequestGetId: return get_id(chain);
    case kRequestDiscard:
      if (!offered(kFeatureDiscard)) return Outcome{read_only_ ? kStatusIoError : kStatusUnsupported, 0};
      return discard_or_write_zeroes(chain, false);
    case kRequestWriteZeroes:
      if (!offered(kFeatureWriteZeroes)) return Outcome{read_only_ ? kStatusIoError : kStatusUnsupported, 0};
      return discard_or_write_zeroes(chain, true);
    default: return Outcome{kStatusUnsupported, 0};
  }
}

std::optional<VirtioBlk::Outcome> VirtioBlk::transfer(const DescriptorChain& chain, const RequestHeader& header,
                                                      bool is_write) {
  // Data of a write is readable after the header, with only the status
  // writable; data of a read is writable before the status, with only the
  // header readable. Anything else has buffers in the wrong direction.
  const uint64_t status_bytes = 1;
  uint64_t length;
  if (is_write) {
    if (chain.writable_bytes() != status_bytes) return Outcome{kStatusIoError, 0};
    length = chain.readable_bytes() - sizeof(RequestHeader);
  } else {
    if (chain.readable_bytes() != sizeof(RequestHeader)) return Outcome{kStatusIoError, 0};
    length = chain.writable_bytes() - status_bytes;
  }
  if (length % kSectorSize != 0) return Outcome{kStatusIoError, 0};
  // Overflow-safe: sector + sectors <= capacity, never multiplied before the check.
  const uint64_t sectors = length >> kSectorShift;
  if (header.sector > capacity_ || sectors > capacity_ - header.sector) return Outcome{kStatusIoError, 0};
  // 5.2.6.2: a write to a read-only device is IOERR and writes nothing.
  if (is_write && read_only_) return Outcome{kStatusIoError, 0};
  if (length == 0) return Outcome{kStatusOk, 0};

  GuestMemory& memory = *active_->memory;
  const uint64_t offset = header.sector << kSectorShift;
  auto iov = is_write ? guest_iov(memory, chain.readable(), sizeof(RequestHeader), length)
                      : guest_iov(memory, chain.writable(), 0, length);
  if (!iov) return Outcome{kStatusIoError, 0};
  if (options_.async_io) {
    std::vector<block::BlockRequest> request;
    request.push_back(
        block::BlockRequest{is_write ? block::BlockOp::kWrite : block::BlockOp::kRead, offset, std::move(*iov), 0});
    return submit_locked(chain, std::move(request), is_write ? 0 : length);
  }
  auto r = is_write ? disk_->writev(offset, *iov) : disk_->readv(offset, *iov);
  if (!r) {
    HV_LOG_WARN("virtio-blk: {} of {} bytes at sector {} failed: {}", is_write ? "write" : "read", length,
                header.sector, r.error().message());
    // A failed read may still have filled some of the buffers.
    return Outcome{kStatusIoError, is_write ? 0 : length};
  }
  return Outcome{kStatusOk, is_write ? 0 : length};
}

VirtioBlk::Outcome VirtioBlk::get_id(const DescriptorChain& chain) {
  uint8_t id[kIdBytes] = {};
  std::memcpy(id, options_.serial.data(), std::min<size_t>(options_.serial.size(), kIdBytes));
  const uint64_t room = std::min<uint64_t>(chain.writable_bytes() - 1, kIdBytes);
  auto wrote = chain.write(*active_->memory, 0, std::span<const uint8_t>(id, room));
  if (!wrote) return {kStatusIoError, 0};
  return {kStatusOk, *wrote};
}

std::optional<VirtioBlk::Outcome> VirtioBlk::discard_or_write_zeroes(const DescriptorChain& chain, bool write_zeroes) {
  const uint64_t payload = chain.readable_bytes() - sizeof(RequestHeader);
  const uint64_t max_segments = write_zeroes ? kMaxWriteZeroesSegments : kMaxDiscardSegments;
  const uint64_t max_sectors = write_zeroes ? kMaxWriteZeroesSectors : kMaxDiscardSectors;
  if (payload == 0 || payload % sizeof(DiscardWriteZeroesSegment) != 0) return Outcome{kStatusIoError, 0};
  const uint64_t count = payload / sizeof(DiscardWriteZeroesSegment);
  if (count > max_segments) return Outcome{kStatusIoError, 0};
  std::vector<DiscardWriteZeroesSegment> segments(count);
  auto got = chain.read(*active_->memory, sizeof(RequestHeader),
                        std::span(reinterpret_cast<uint8_t*>(segments.data()), payload));
  if (!got || *got != payload) return Outcome{kStatusIoError, 0};
  // Check every segment before touching the disk, so a bad one leaves it unchanged.
  for (const auto& s : segments) {
    // 5.2.6.2: unknown flags are UNSUPP, and so is UNMAP on a discard.
    if (s.flags & ~kSegmentFlagUnmap) return Outcome{kStatusUnsupported, 0};
    if (!write_zeroes && (s.flags & kSegmentFlagUnmap)) return Outcome{kStatusUnsupported, 0};
    if (s.num_sectors > max_sectors) return Outcome{kStatusIoError, 0};
    if (s.sector > capacity_ || s.num_sectors > capacity_ - s.sector) return Outcome{kStatusIoError, 0};
  }
  if (read_only_) return Outcome{kStatusIoError, 0};
  if (options_.async_io) {
    // One block request per segment; the guest request is answered when the
    // last finishes, IOERR if any failed.
    std::vector<block::BlockRequest> requests;
    for (const auto& s : segments) {
      if (s.num_sectors == 0) continue;
      // UNMAP lets write-zeroes deallocate (a hole punch); without it the
      // image zeroes in place where it can.
      requests.push_back(block::BlockRequest{write_zeroes ? block::BlockOp::kWriteZeroes : block::BlockOp::kDiscard,
                                             s.sector << kSectorShift,
                                             {},
                                             uint64_t{s.num_sectors} << kSectorShift,
                                             write_zeroes && (s.flags & kSegmentFlagUnmap) != 0});
    }
    return submit_locked(chain, std::move(requests), 0);
  }
  for (const auto& s : segments) {
    const uint64_t offset = s.sector << kSectorShift;
    const uint64_t length = uint64_t{s.num_sectors} << kSectorShift;
    if (length == 0) continue;
    auto r = write_zeroes ? disk_->write_zeroes(offset, length) : disk_->discard(offset, length);
    if (!r) {
      HV_LOG_WARN("virtio-blk: {} of {} sectors at {} failed: {}", write_zeroes ? "write-zeroes" : "discard",
                  s.num_sectors, s.sector, r.error().message());
      return Outcome{kStatusIoError, 0};
    }
  }
  return Outcome{kStatusOk, 0};
}

}  // namespace hostvisor
