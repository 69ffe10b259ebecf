#include "net/host_only/host_gateway.h"

#include "base/log.h"
#include "net/host_only/gateway_filter.h"

namespace hostvisor::net {

Result<std::unique_ptr<HostGateway>> HostGateway::create(const Ipv4Network& network) {
  UserNetOption nat;
  nat.network = network;
  nat.ipv6 = false;
  SlirpBackendLimits limits;
  limits.forward_dns = false;
  limits.gateway_host = 1;
  limits.serve_dhcp = false;
  auto slirp = SlirpBackend::create(nat, limits);
  if (!slirp) return std::move(slirp).error().with_context("the host gateway");
  return std::unique_ptr<HostGateway>(new HostGateway(network, std::move(slirp).value()));
}

void HostGateway::deliver(const VirtioNetHeader& header, std::span<const uint8_t> frame) {
  if (!gateway_takes_frame(frame, address())) {
    ++refused_;
    return;
  }
  const iovec packet[2] = {{const_cast<VirtioNetHeader*>(&header), sizeof header},
                           {const_cast<uint8_t*>(frame.data()), frame.size()}};
  // A full queue or a malformed header: dropped and counted by slirp's backend.
  if (auto sent = slirp_->send(packet); !sent) HV_LOG_DEBUG("host gateway: {}", sent.error().message());
}

std::optional<size_t> HostGateway::receive(std::span<uint8_t> packet) {
  auto got = slirp_->receive(packet);
  if (!got) return std::nullopt;
  return *got;
}

Result<void> HostGateway::add_forward(const HostForward& forward) {
  const Ipv4Address broadcast{network_.base.value | ~network_.mask()};
  if (!forward.guest_address || !network_.contains(*forward.guest_address) || *forward.guest_address == address() ||
      *forward.guest_address == network_.base || *forward.guest_address == broadcast)
    return Error(ErrorCode::kInvalidArgument, "hostfwd=" + format_host_forward(forward) +
                                                  ": the guest address must be a VM's address on " +
                                                  format_ipv4_network(network_));
  return slirp_->add_forward(forward);
}

}  // namespace hostvisor::net
