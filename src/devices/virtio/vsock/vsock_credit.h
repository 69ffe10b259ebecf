// Credit-based flow control of one vsock stream (virtio 1.2, 5.10.6.3), both
// directions, in the spec's wrapping 32-bit counters:
//
//  - guest -> host: we advertise buf_alloc (a fixed, bounded buffer) and
//    fwd_cnt (bytes of the guest's passed on to the host program). The guest
//    may have at most buf_alloc bytes not yet forwarded; a packet beyond that
//    is a protocol violation (the device resets the stream), so a flooding
//    guest costs at most buf_alloc bytes of host memory per stream;
//  - host -> guest: the guest advertises its own buf_alloc and fwd_cnt in
//    every packet; we never send more than buf_alloc - (tx_cnt - fwd_cnt).
#pragma once

#include <cstdint>

namespace hostvisor::vsock {

class VsockCredit {
 public:
  explicit VsockCredit(uint32_t buf_alloc) : buf_alloc_(buf_alloc) {}

  // --- guest -> host: our receive buffer.
  uint32_t buf_alloc() const { return buf_alloc_; }
  uint32_t fwd_cnt() const { return fwd_cnt_; }
  // Bytes received from the guest and not yet forwarded.
  uint32_t buffered() const { return rx_cnt_ - fwd_cnt_; }
  // The guest sent `length` bytes: false (and nothing counted) if that is
  // more than the credit we gave it.
  bool receive(uint32_t length);
  // `length` of the buffered bytes reached the host program.
  void forward(uint32_t length) { fwd_cnt_ += length; }
  // Should the guest hear our fwd_cnt now? When a quarter of the buffer has
  // been forwarded since it last did: often enough that a guest writing
  // without pause never waits for credit, rarely enough to cost little.
  bool update_due() const { return fwd_cnt_ - announced_fwd_cnt_ >= buf_alloc_ / 4; }
  // A packet carrying fwd_cnt() went to the guest.
  void announced() { announced_fwd_cnt_ = fwd_cnt_; }

  // --- host -> guest: the guest's receive buffer.
  // From the header of any packet of this stream the guest sent.
  void peer_update(uint32_t buf_alloc, uint32_t fwd_cnt) {
    peer_buf_alloc_ = buf_alloc;
    peer_fwd_cnt_ = fwd_cnt;
  }
  // How many bytes the guest can take now.
  uint32_t peer_free() const;
  // `length` bytes went to the guest (at most peer_free()).
  void sent(uint32_t length) { tx_cnt_ += length; }
  uint32_t tx_cnt() const { return tx_cnt_; }

 private:
  uint32_t buf_alloc_;
  uint32_t rx_cnt_ = 0;
  uint32_t fwd_cnt_ = 0;
  uint32_t announced_fwd_cnt_ = 0;
  uint32_t peer_buf_alloc_ = 0;
  uint32_t peer_fwd_cnt_ = 0;
  uint32_t tx_cnt_ = 0;
};

}  // namespace hostvisor::vsock
