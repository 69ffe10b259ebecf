// --balloon[=KEY=VALUE,...]: a virtio-balloon device.
//   deflate-on-oom=on|off       the guest may take pages back rather than OOM-kill (off)
//   free-page-reporting=on|off  the guest reports free memory, which goes back to the host (on)
//   stats-interval=SECONDS      how often the guest's memory statistics are asked for (5; 0: never)
//   transport=pci|mmio          where the device sits (pci)
// A bare --balloon (or =on) is the defaults; --balloon=off is no balloon,
// also for the default guest, which otherwise gets one.
#pragma once

#include <optional>
#include <string>

#include "base/result.h"
#include "vmm/machine_config.h"

namespace hostvisor::cli {

Result<std::optional<BalloonConfig>> parse_balloon_option(const std::string& text);

}  // namespace hostvisor::cli
