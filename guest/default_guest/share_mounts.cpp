#include "guest/default_guest/share_mounts.h"

namespace hostvisor::guest {

Result<void> check_guest_mount_path(const std::string& path) {
  constexpr size_t kMaxPath = 200;  // the kernel's command line holds 2048 bytes in all
  if (path.empty() || path[0] != '/' || path == "/")
    return Error(ErrorCode::kInvalidArgument,
                 "mount=" + path + ": the guest path must be absolute and not / itself, e.g. /home/me/project");
  if (path.size() > kMaxPath)
    return Error(ErrorCode::kInvalidArgument, "mount=" + path.substr(0, 40) + "...: a guest path is at most " +
                                                  std::to_string(kMaxPath) + " characters");
  for (unsigned char c : path) {
    // What travels on the kernel command line and through /init's shell
    // loop: no separators of the encoding, no quoting, no globbing.
    if (c <= ' ' || c >= 0x7f || c == ',' || c == ':' || c == '"' || c == '\'' || c == '\\' || c == '*' || c == '?' ||
        c == '[' || c == ']')
      return Error(ErrorCode::kInvalidArgument,
                   "mount=" + path +
                       ": a guest path cannot hold spaces, non-printable characters or any of , : \" ' \\ * ? [ ] "
                       "(they cannot be passed to the guest's init safely); mount the share elsewhere");
  }
  return ok();
}

std::string share_mounts_cmdline_parameter(const std::vector<ShareMount>& shares) {
  if (shares.empty()) return "";
  std::string list;
  for (const ShareMount& share : shares) {
    if (!list.empty()) list += ',';
    list += share.tag;
    if (!share.mount.empty()) list += ":" + share.mount;
  }
  return "hostvisor.shares=" + list;
}

}  // namespace hostvisor::guest
