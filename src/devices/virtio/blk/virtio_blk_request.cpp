#include "devices/virtio/blk/virtio_blk_request.h"

#include <string>

namespace hostvisor::virtio_blk {

namespace {

constexpr uint64_t kStatusBytes = 1;

// Is [sector, sector + sectors) on the disk? Overflow-safe: never adds or
// multiplies before comparing.
bool on_disk(uint64_t sector, uint64_t sectors, uint64_t capacity) {
  return sector <= capacity && sectors <= capacity - sector;
}

Request transfer(const DescriptorChain& chain, const RequestHeader& header, bool is_write, const DiskLimits& limits) {
  // Data of a write is readable after the header, with only the status
  // writable; data of a read is writable before the status, with only the
  // header readable. Anything else has buffers in the wrong direction.
  uint64_t length;
  if (is_write) {
    if (chain.writable_bytes() != kStatusBytes) return RejectedRequest{kStatusIoError};
    length = chain.readable_bytes() - sizeof(RequestHeader);
  } else {
    if (chain.readable_bytes() != sizeof(RequestHeader)) return RejectedRequest{kStatusIoError};
    length = chain.writable_bytes() - kStatusBytes;
  }
  if (length % kSectorSize != 0) return RejectedRequest{kStatusIoError};
  if (!on_disk(header.sector, length >> kSectorShift, limits.capacity_sectors)) return RejectedRequest{kStatusIoError};
  // 5.2.6.2: a write to a read-only device is IOERR and writes nothing.
  if (is_write && limits.read_only) return RejectedRequest{kStatusIoError};
  if (is_write) return WriteRequest{header.sector, length};
  return ReadRequest{header.sector, length};
}

Request segments(const GuestMemory& memory, const DescriptorChain& chain, bool write_zeroes, const DiskLimits& limits) {
  const uint64_t payload = chain.readable_bytes() - sizeof(RequestHeader);
  const uint64_t max_segments = write_zeroes ? limits.max_write_zeroes_segments : limits.max_discard_segments;
  const uint64_t max_sectors = write_zeroes ? limits.max_write_zeroes_sectors : limits.max_discard_sectors;
  if (payload == 0 || payload % sizeof(DiscardWriteZeroesSegment) != 0) return RejectedRequest{kStatusIoError};
  const uint64_t count = payload / sizeof(DiscardWriteZeroesSegment);
  if (count > max_segments) return RejectedRequest{kStatusIoError};
  SegmentsRequest request{write_zeroes, std::vector<DiscardWriteZeroesSegment>(count)};
  auto got = chain.read(memory, sizeof(RequestHeader),
                        std::span(reinterpret_cast<uint8_t*>(request.segments.data()), payload));
  if (!got || *got != payload) return RejectedRequest{kStatusIoError};
  // Every segment is checked before any touches the disk, so a bad one leaves it unchanged.
  for (const auto& s : request.segments) {
    // 5.2.6.2: unknown flags are UNSUPP, and so is UNMAP on a discard.
    if (s.flags & ~kSegmentFlagUnmap) return RejectedRequest{kStatusUnsupported};
    if (!write_zeroes && (s.flags & kSegmentFlagUnmap)) return RejectedRequest{kStatusUnsupported};
    if (s.num_sectors > max_sectors) return RejectedRequest{kStatusIoError};
    if (!on_disk(s.sector, s.num_sectors, limits.capacity_sectors)) return RejectedRequest{kStatusIoError};
  }
  if (limits.read_only) return RejectedRequest{kStatusIoError};
  return request;
}

}  // namespace

Result<Request> parse_request(const GuestMemory& memory, const DescriptorChain& chain, const DiskLimits& limits) {
  if (chain.writable_bytes() < kStatusBytes)
    return Error(ErrorCode::kGuest, "request at descriptor " + std::to_string(chain.head()) +
                                        " has no device-writable status byte, so it cannot be answered; the "
                                        "driver is broken or hostile");
  // A header that is missing, short or device-writable: malformed but answerable.
  if (chain.readable_bytes() < sizeof(RequestHeader)) return Request{RejectedRequest{kStatusIoError}};
  RequestHeader header{};
  auto got = chain.read(memory, 0, std::span(reinterpret_cast<uint8_t*>(&header), sizeof header));
  if (!got || *got != sizeof header) return Request{RejectedRequest{kStatusIoError}};
  switch (header.type) {
    case kRequestIn: return transfer(chain, header, false, limits);
    case kRequestOut: return transfer(chain, header, true, limits);
    case kRequestFlush: return Request{FlushRequest{}};
    case kRequestGetId:
      return Request{GetIdRequest{std::min<uint64_t>(chain.writable_bytes() - kStatusBytes, kIdBytes)}};
    case kRequestDiscard:
      if (!limits.discard) return Request{RejectedRequest{limits.read_only ? kStatusIoError : kStatusUnsupported}};
      return segments(memory, chain, false, limits);
    case kRequestWriteZeroes:
      if (!limits.write_zeroes) return Request{RejectedRequest{limits.read_only ? kStatusIoError : kStatusUnsupported}};
      return segments(memory, chain, true, limits);
    default: return Request{RejectedRequest{kStatusUnsupported}};
  }
}

}  // namespace hostvisor::virtio_blk
