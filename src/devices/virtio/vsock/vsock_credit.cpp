#include "devices/virtio/vsock/vsock_credit.h"

namespace hostvisor::vsock {

bool VsockCredit::receive(uint32_t length) {
  // Wrapping subtraction: correct across the counters' 2^32 wrap.
  if (length > buf_alloc_ - buffered()) return false;
  rx_cnt_ += length;
  return true;
}

uint32_t VsockCredit::peer_free() const {
  const uint32_t in_flight = tx_cnt_ - peer_fwd_cnt_;
  // A guest that shrank its buffer below what is in flight, or claims to
  // have forwarded more than it was sent, gets nothing until it makes sense.
  return in_flight > peer_buf_alloc_ ? 0 : peer_buf_alloc_ - in_flight;
}

}  // namespace hostvisor::vsock
