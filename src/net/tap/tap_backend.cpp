#include "net/tap/tap_backend.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log_rate_limit.h"

namespace hostvisor::net {

namespace {
constexpr const char* kTunPath = "/dev/net/tun";

// The interface's MTU, through an ordinary socket (tap fds do not answer SIOCGIFMTU).
uint32_t interface_mtu(const std::string& ifname) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq req{};
  std::strncpy(req.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  if (!sock.valid() || ::ioctl(sock.get(), SIOCGIFMTU, &req) < 0) return 1500;
  return static_cast<uint32_t>(req.ifr_mtu);
}
}  // namespace

Result<std::unique_ptr<TapBackend>> TapBackend::open(const std::string& ifname) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ)
    return Error(ErrorCode::kInvalidArgument,
                 "tap interface name '" + ifname + "' must have 1 to " + std::to_string(IFNAMSIZ - 1) + " characters");
  UniqueFd fd(::open(kTunPath, O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      return Error(ErrorCode::kNotFound, std::string(kTunPath) + " is missing (" + std::strerror(err) +
                                             "): load the tun module with `modprobe tun`, or use a user-mode network");
    if (err == EACCES || err == EPERM)
      return Error(ErrorCode::kIo, std::string("permission denied opening ") + kTunPath +
                                       ": run hostvisor as root or with CAP_NET_ADMIN, or make the device "
                                       "readable by your user");
    return Error::from_errno(std::string("opening ") + kTunPath, err);
  }
  ifreq req{};
  std::strncpy(req.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  req.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &req) < 0) {
    const int err = errno;
    if (err == EPERM || err == EACCES)
      return Error(ErrorCode::kIo, "permission denied attaching to tap '" + ifname +
                                       "': create it for your user first (`sudo ip tuntap add dev " + ifname +
                                       " mode tap vnet_hdr user $USER`) or run with CAP_NET_ADMIN");
    if (err == EBUSY) return Error(ErrorCode::kBusy, "tap '" + ifname + "' is already in use by another program");
    if (err == EINVAL)
      return Error(ErrorCode::kInvalidArgument,
                   "'" + ifname + "' exists but is not a tap interface with vnet headers; pick another name");
    return Error::from_errno("attaching to tap '" + ifname + "'", err);
  }
  // virtio_net_hdr_v1: the 10-byte legacy header plus num_buffers.
  int header_size = static_cast<int>(kVnetHeaderSize);
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &header_size) < 0)
    return Error::from_errno("setting the vnet header size of tap '" + ifname + "'");
  // Offloads toward us stay off until the guest's driver accepts them; the
  // probe only learns whether this kernel's tap can do them.
  const bool offloads = ::ioctl(fd.get(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) == 0;
  if (offloads && ::ioctl(fd.get(), TUNSETOFFLOAD, 0) < 0)
    return Error::from_errno("turning off the offloads of tap '" + ifname + "'");
  // The kernel may have shortened or kept the name; use what it says.
  const std::string actual(req.ifr_name, strnlen(req.ifr_name, IFNAMSIZ));
  return std::unique_ptr<TapBackend>(new TapBackend(std::move(fd), actual, interface_mtu(actual), offloads));
}

Result<void> TapBackend::set_receive_offloads(const ReceiveOffloads& offloads) {
  if (!offloads_) return NetBackend::set_receive_offloads(offloads);
  unsigned flags = 0;
  // The tap refuses TSO without checksum offload, as the guest features depend.
  if (offloads.csum) {
    flags |= TUN_F_CSUM;
    if (offloads.tso4) flags |= TUN_F_TSO4;
    if (offloads.tso6) flags |= TUN_F_TSO6;
    if (offloads.ecn && (offloads.tso4 || offloads.tso6)) flags |= TUN_F_TSO_ECN;
  }
  if (::ioctl(fd_.get(), TUNSETOFFLOAD, flags) < 0) return Error::from_errno("setting the offloads of " + name_);
  return ok();
}

Result<void> TapBackend::send(std::span<const iovec> packet) {
  for (;;) {
    const ssize_t n = ::writev(fd_.get(), packet.data(), static_cast<int>(packet.size()));
    if (n >= 0) {
      counters_.count_tx(static_cast<size_t>(n) > kVnetHeaderSize ? static_cast<size_t>(n) - kVnetHeaderSize : 0);
      return ok();
    }
    if (errno == EINTR) continue;
    counters_.count_tx_drop();
    if (errno == EAGAIN || errno == ENOBUFS) return Error(ErrorCode::kBusy, name_ + " is congested; packet dropped");
    if (errno == EIO) {
      // Every frame the guest sends fails until someone brings the link up:
      // say so (rate-limited), since nothing else will.
      HV_LOG_WARN_LIMITED("{} is down: the guest's frames are dropped until it is up (`ip link set {} up`)", name_,
                          ifname_);
      return Error(ErrorCode::kBusy, name_ + " is down; packet dropped");
    }
    // EINVAL: a malformed header or frame (from the guest); dropped too.
    return Error::from_errno("sending a packet on " + name_);
  }
}

Result<std::optional<size_t>> TapBackend::receive(std::span<uint8_t> buffer) {
  const iovec whole{buffer.data(), buffer.size()};
  return receive_in_place({&whole, 1});
}

Result<std::optional<size_t>> TapBackend::receive_in_place(std::span<const iovec> buffers) {
  for (;;) {
    const ssize_t n = ::readv(fd_.get(), buffers.data(), static_cast<int>(buffers.size()));
    if (n >= 0) {
      counters_.count_rx(static_cast<size_t>(n) > kVnetHeaderSize ? static_cast<size_t>(n) - kVnetHeaderSize : 0);
      return std::optional<size_t>(static_cast<size_t>(n));
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return std::optional<size_t>();
    return Error::from_errno("receiving a packet from " + name_);
  }
}

}  // namespace hostvisor::net
