#include "block/disk_serial.h"

namespace hostvisor::block {

Result<void> check_disk_serial(const std::string& serial) {
  // virtio-blk's GET_ID answer is 20 bytes; the characters are ones a
  // guest's shell compares without quoting surprises.
  if (serial.empty() || serial.size() > 20 ||
      serial.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") !=
          std::string::npos)
    return Error(ErrorCode::kInvalidArgument,
                 "--disk serial=" + serial + ": a serial is 1 to 20 characters of A-Z a-z 0-9 _ . -");
  return ok();
}

}  // namespace hostvisor::block
