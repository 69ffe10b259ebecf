// The framing of QEMU's `-netdev stream` (and `-netdev socket`): each frame
// on the byte stream is a 4-byte big-endian length followed by that many
// bytes. A switch port speaks it to QEMU as it is; between hostvisor ports
// each frame also starts with a virtio-net header once the port negotiated
// offloads (net/switch/offload_hello.h).
//
// StreamFrameReader decodes it incrementally from untrusted bytes: a zero
// length, a length below an Ethernet header, a length over the port's limit
// and a stream that ends inside a frame are errors (the caller closes the
// port); nothing the peer sends makes it allocate more than its fixed buffer.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"

namespace hostvisor::net {

inline constexpr size_t kStreamLengthSize = 4;
inline constexpr size_t kEthernetHeaderSize = 14;
// The largest plain frame a port takes: a 1500-byte MTU behind an Ethernet
// header with one VLAN tag (no FCS on the stream).
inline constexpr size_t kMaxPlainFrameSize = 1500 + 18;

// The 4-byte prefix of a frame of `length` bytes.
std::array<uint8_t, kStreamLengthSize> encode_stream_length(uint32_t length);

class StreamFrameReader {
 public:
  // Frames of min_frame..max_frame bytes; the buffer holds `batch_frames`
  // maximal frames so one read() takes many small ones.
  StreamFrameReader(size_t min_frame, size_t max_frame, size_t batch_frames = 4);

  // Changes the limits (a port that negotiated headers takes longer frames).
  // The buffer grows at most once, to the new maximum.
  void set_limits(size_t min_frame, size_t max_frame);

  // Where the next read() of the socket goes; never empty.
  std::span<uint8_t> free_space();
  // Records that `n` bytes were read into free_space().
  void commit(size_t n);

  // The next complete frame (valid until the next call to any method), or
  // nothing when more bytes are needed. An error for a bad length; the
  // stream is then unusable.
  Result<std::optional<std::span<const uint8_t>>> next();

  // At the end of the stream: an error if it ended inside a frame.
  Result<void> finish() const;

  // Bytes buffered and not yet returned as frames.
  size_t pending() const { return end_ - begin_; }

 private:
  void compact();

  size_t min_frame_, max_frame_, batch_frames_;
  std::vector<uint8_t> buffer_;
  size_t begin_ = 0, end_ = 0;
  bool failed_ = false;
};

}  // namespace hostvisor::net
