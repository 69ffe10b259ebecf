// Arbitrary packets (virtio_net_hdr_v1 + frame) from a guest into the NAT.
// Input: one flags byte, then records of [u16 length][u8 split][length
// bytes]; each record is one send(), scattered over two iovecs at `split`.
// After every send the loop's work runs (service()) and the guest side
// reads what came back, sometimes into a short buffer. The backend is
// restricted with no forwards and no DNS, so nothing leaves the process but
// the gateway's own answers (DHCP, ARP, ICMP echo).
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "net/slirp/slirp_backend.h"

using namespace hostvisor;
using namespace hostvisor::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto flags = fuzz::take<uint8_t>(data, size);
  UserNetOption option;
  option.restrict = true;
  option.ipv6 = flags & 1;
  SlirpBackendLimits limits;
  limits.forward_dns = false;
  limits.transmit_queue_packets = 16;
  limits.receive_queue_packets = 16;
  auto backend = SlirpBackend::create(option, limits);
  if (!backend.ok()) std::abort();
  SlirpBackend& nat = **backend;

  std::vector<uint8_t> received(flags & 2 ? 64 : kMaxPacketSize);
  while (size > 0) {
    const auto length = static_cast<size_t>(fuzz::take<uint16_t>(data, size));
    const auto split = fuzz::take<uint8_t>(data, size);
    const size_t n = length < size ? length : size;
    const size_t first = split < n ? split : n;
    const iovec packet[] = {{const_cast<uint8_t*>(data), first}, {const_cast<uint8_t*>(data + first), n - first}};
    (void)nat.send(packet);
    data += n;
    size -= n;
    nat.service();
    for (;;) {
      auto got = nat.receive(received);
      if (!got.ok()) std::abort();
      if (!got->has_value()) break;
      if (**got > received.size()) std::abort();
    }
  }
  if (nat.receive_queue_size() > limits.receive_queue_packets) std::abort();
  return 0;
}
