#include "net/host_interface/net_admin.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

namespace hostvisor::net {

namespace {
// Whether the user namespace that owns this process's network namespace is
// this process's own or one below it, where its capabilities count. A
// process in a user namespace of its own that kept the host's network
// namespace (--jail with a host-only NIC) holds CAP_NET_ADMIN in the
// former, which gives it nothing over the latter: the kernel refuses the
// owner's descriptor (EPERM) as outside the caller's scope.
bool network_namespace_in_scope() {
  const int net = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (net < 0) return true;  // no /proc (or no nsfs): the effective set alone decides, as before
  const int owner = ::ioctl(net, NS_GET_USERNS);
  const int error = errno;
  ::close(net);
  if (owner >= 0) {
    ::close(owner);
    return true;
  }
  return error != EPERM;  // ENOTTY/EINVAL: a kernel without NS_GET_USERNS (before 4.9)
}
}  // namespace

bool has_net_admin() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  if ((data[CAP_NET_ADMIN / 32].effective & (1u << (CAP_NET_ADMIN % 32))) == 0) return false;
  return network_namespace_in_scope();
}

std::string net_admin_hint() {
  std::error_code ec;
  std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec || self.empty()) self = "hostvisor";
  return "run hostvisor as root, or grant it CAP_NET_ADMIN once: sudo setcap cap_net_admin+ep " + self;
}

}  // namespace hostvisor::net
