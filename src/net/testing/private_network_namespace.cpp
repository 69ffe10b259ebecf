#include "net/testing/private_network_namespace.h"

#include <linux/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "base/fd.h"

namespace hostvisor::net::testing {

namespace {
// Maps the caller's uid and gid to root in the new user namespace.
Result<void> map_to_root(uid_t uid, gid_t gid) {
  std::ofstream("/proc/self/setgroups") << "deny";
  std::ofstream uid_map("/proc/self/uid_map");
  uid_map << "0 " << uid << " 1\n";
  std::ofstream gid_map("/proc/self/gid_map");
  gid_map << "0 " << gid << " 1\n";
  uid_map.close();
  gid_map.close();
  if (!uid_map || !gid_map) return Error(ErrorCode::kIo, "writing the user namespace's uid and gid maps failed");
  return ok();
}
}  // namespace

Result<void> enter_private_network_namespace() {
  if (::unshare(CLONE_NEWNET) != 0) {
    if (errno != EPERM) return Error::from_errno("unshare(CLONE_NEWNET)");
    const uid_t uid = ::getuid();
    const gid_t gid = ::getgid();
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0)
      return Error::from_errno(
          "unshare(CLONE_NEWUSER | CLONE_NEWNET): run as root, or allow unprivileged user namespaces "
          "(sysctl kernel.unprivileged_userns_clone=1)");
    HV_TRY(map_to_root(uid, gid));
  }
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq req{};
  std::strncpy(req.ifr_name, "lo", IFNAMSIZ - 1);
  if (!sock.valid() || ::ioctl(sock.get(), SIOCGIFFLAGS, &req) != 0) return Error::from_errno("reading lo's flags");
  req.ifr_flags |= IFF_UP;
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &req) != 0) return Error::from_errno("bringing lo up");
  return ok();
}

}  // namespace hostvisor::net::testing
