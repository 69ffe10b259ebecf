// How the default guest learns where to mount each virtio-fs share: Linux
// 6.1 lists no virtio-fs tags in sysfs, so hostvisor passes them on the
// kernel command line, and the guest's /init mounts each one:
//   hostvisor.shares=TAG[:GUESTPATH][,TAG[:GUESTPATH]...]
// A share without a path goes to /mnt/TAG. The command line is split on
// spaces and the list on ',' and ':', so a guest path that holds any of
// those (or a character the shell or the kernel's parser treats specially)
// is refused here instead of being mounted somewhere else.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace hostvisor::guest {

struct ShareMount {
  std::string tag;    // [A-Za-z0-9_.-]{1,36}, checked by whoever parses the share
  std::string mount;  // absolute guest path; empty: /mnt/TAG
};

// A guest mount path the encoding carries: absolute, at most 200 printable
// ASCII characters, none of them space , : " ' \ * ? [ ] and not "/" itself.
Result<void> check_guest_mount_path(const std::string& path);

// "hostvisor.shares=..." for these shares; empty without any.
std::string share_mounts_cmdline_parameter(const std::vector<ShareMount>& shares);

}  // namespace hostvisor::guest
