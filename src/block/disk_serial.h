// A virtio disk's serial as the user gives it (--disk ...,serial=ID, the
// library's VmDisk): what the guest reads from /sys/block/vdX/serial.
#pragma once

#include <string>

#include "base/result.h"

namespace hostvisor::block {

// 1 to 20 characters (virtio-blk's GET_ID answer is 20 bytes) of
// [A-Za-z0-9_.-], which a guest's shell compares without quoting surprises.
Result<void> check_disk_serial(const std::string& serial);

}  // namespace hostvisor::block
