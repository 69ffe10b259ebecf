#include "net/host_interface/link_control.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/fd.h"

namespace hostvisor::net {

namespace {

// The ioctls go through any socket of the process's network namespace.
Result<UniqueFd> control_socket() {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return Error::from_errno("opening a socket to configure network interfaces");
  return sock;
}

Result<ifreq> request_for(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return Error(ErrorCode::kInvalidArgument,
                 "interface name '" + name + "' must have 1 to " + std::to_string(IFNAMSIZ - 1) + " characters");
  ifreq req{};
  std::memcpy(req.ifr_name, name.data(), name.size());
  return req;
}

sockaddr ipv4_sockaddr(Ipv4Address address) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(address.value);
  sockaddr out{};
  std::memcpy(&out, &in, sizeof in);
  return out;
}

Result<void> set_link_state(const std::string& name, bool up) {
  ifreq req = HV_TRY(request_for(name));
  const UniqueFd sock = HV_TRY(control_socket());
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &req) != 0) return Error::from_errno("reading the flags of " + name);
  req.ifr_flags = static_cast<short>(up ? req.ifr_flags | IFF_UP : req.ifr_flags & ~IFF_UP);
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &req) != 0)
    return Error::from_errno(std::string(up ? "bringing " : "taking ") + name + (up ? " up" : " down"));
  return ok();
}

}  // namespace

Result<unsigned> interface_index(const std::string& name) {
  ifreq req = HV_TRY(request_for(name));
  const UniqueFd sock = HV_TRY(control_socket());
  if (::ioctl(sock.get(), SIOCGIFINDEX, &req) != 0) {
    if (errno == ENODEV) return Error(ErrorCode::kNotFound, "there is no network interface " + name);
    return Error::from_errno("looking up network interface " + name);
  }
  return static_cast<unsigned>(req.ifr_ifindex);
}

Result<void> set_link_up(const std::string& name) { return set_link_state(name, true); }

Result<void> attach_to_bridge(const std::string& bridge, const std::string& port) {
  const unsigned port_index = HV_TRY(interface_index(port));
  ifreq req = HV_TRY(request_for(bridge));
  req.ifr_ifindex = static_cast<int>(port_index);
  const UniqueFd sock = HV_TRY(control_socket());
  if (::ioctl(sock.get(), SIOCBRADDIF, &req) != 0) {
    const int err = errno;
    if (err == EOPNOTSUPP || err == EINVAL) return Error(ErrorCode::kUnsupported, bridge + " is not a bridge");
    if (err == ENODEV) return Error(ErrorCode::kNotFound, "there is no bridge " + bridge);
    return Error::from_errno("adding " + port + " to bridge " + bridge, err);
  }
  return ok();
}

Result<void> create_bridge(const std::string& name) {
  HV_TRY(request_for(name));
  const UniqueFd sock = HV_TRY(control_socket());
  char buffer[IFNAMSIZ]{};
  std::memcpy(buffer, name.data(), name.size());
  if (::ioctl(sock.get(), SIOCBRADDBR, buffer) != 0) {
    if (errno == EEXIST) return Error(ErrorCode::kBusy, "a network interface " + name + " exists already");
    return Error::from_errno("creating bridge " + name);
  }
  return ok();
}

Result<void> delete_bridge(const std::string& name) {
  HV_TRY(set_link_state(name, false));  // the kernel deletes only a bridge that is down
  const UniqueFd sock = HV_TRY(control_socket());
  char buffer[IFNAMSIZ]{};
  std::memcpy(buffer, name.data(), name.size());
  if (::ioctl(sock.get(), SIOCBRDELBR, buffer) != 0) return Error::from_errno("deleting bridge " + name);
  return ok();
}

Result<void> set_ipv4_address(const std::string& name, Ipv4Address address, const Ipv4Network& network) {
  const UniqueFd sock = HV_TRY(control_socket());
  auto set = [&](unsigned long request, Ipv4Address value, const char* what) -> Result<void> {
    ifreq req = HV_TRY(request_for(name));
    req.ifr_addr = ipv4_sockaddr(value);
    if (::ioctl(sock.get(), request, &req) != 0)
      return Error::from_errno(std::string("setting the ") + what + " of " + name);
    return ok();
  };
  HV_TRY(set(SIOCSIFADDR, address, "address"));
  HV_TRY(set(SIOCSIFNETMASK, {network.mask()}, "netmask"));
  HV_TRY(set(SIOCSIFBRDADDR, {network.base.value | ~network.mask()}, "broadcast address"));
  return ok();
}

}  // namespace hostvisor::net
