// A second cpio archive for the default guest's initramfs: test guests get
// host programs without a default guest of their own. Linux unpacks
// concatenated newc archives one after the other (the later over the
// earlier), so the default guest's initramfs followed by this archive boots
// the default guest with these files added.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "base/result.h"
#include "guest/default_guest/cpio_writer.h"

namespace hostvisor::testing {

class InitramfsAppendix {
 public:
  // The host file `host_path` (an absolute path) at the same path in the
  // guest, with the content of the file it resolves to (the path itself
  // is what programs and the loader name). Adding a path twice keeps the first.
  Result<void> add_host_file(const std::string& host_path, uint32_t mode = 0644);
  // A host program with the shared libraries and the dynamic loader that
  // ldd lists for it, each at its host path.
  Result<void> add_host_program(const std::string& host_path);
  // A file made by the test, at `guest_path` (absolute).
  Result<void> add_file(const std::string& guest_path, const std::string& data, uint32_t mode = 0644);

  // Writes `base_initrd`'s bytes followed by this archive to `out_path`.
  Result<void> write_after(const std::string& base_initrd, const std::string& out_path);

 private:
  // Adds every directory above `guest_path` not added yet.
  Result<void> add_parents(const std::string& guest_path);

  guest::CpioWriter cpio_;
  std::set<std::string> added_;
};

// The libraries (and the dynamic loader) `binary` needs, as ldd resolves them.
Result<std::vector<std::string>> shared_libraries(const std::string& binary);

}  // namespace hostvisor::testing
