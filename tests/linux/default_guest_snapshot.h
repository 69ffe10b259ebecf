// One snapshot of the default guest booted to its shell, shared by the
// guest-level tests of a build: a test restores it as a clone (its own MAC,
// its own disk overlays) in milliseconds instead of booting the guest for
// ~10 s on the software CPU.
//
// The snapshot lives in the build tree (DEFAULT_GUEST_SNAPSHOT_DIR) with a
// key file beside it naming what it was made from: the hostvisor binary
// (size and modification time), the default guest's manifest, kernel and
// initramfs, and the command line that booted it. A snapshot whose key does
// not match what is there now is stale and is made again; the fixture test
// makes it afresh when HOSTVISOR_TEST_FRESH_SNAPSHOT=1 is set. An flock beside it
// serialises making it (exclusive) against using it (shared), so parallel
// tests never see a half-replaced one; under ctest the fixture test
// LinuxGuestSnapshotFixture.* makes it before the tests that need it run.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "tests/linux/guest_console.h"

namespace hostvisor::testing {

// The machine the shared snapshot holds: what most guest tests booted.
inline const std::vector<std::string> kDefaultGuestMachine = {"--accel", "emu", "--cpus", "1", "--memory", "512M"};

// Holds the shared snapshot, made or checked, for as long as it lives.
class DefaultGuestSnapshot {
 public:
  // Makes the snapshot when it is missing, stale or `fresh` asks for a new
  // one (booting the guest: minutes at worst); error() says what failed.
  // `made` (optional) tells whether this call booted the guest.
  explicit DefaultGuestSnapshot(bool* made = nullptr, bool fresh = false);
  ~DefaultGuestSnapshot();
  DefaultGuestSnapshot(const DefaultGuestSnapshot&) = delete;
  DefaultGuestSnapshot& operator=(const DefaultGuestSnapshot&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::filesystem::path& dir() const { return dir_; }
  // What the boot that made it printed on the console (kept beside it).
  std::string boot_output() const;

  // Starts a clone of the snapshot in `console` (`extra` goes on its
  // command line) and types an empty line, so its shell prints a prompt
  // (the one before the snapshot was already printed). False on failure,
  // with console.failure() saying why.
  bool start_clone(GuestConsole& console, const std::vector<std::string>& extra = {}) const;

 private:
  std::string make();

  std::filesystem::path dir_;
  int lock_fd_ = -1;
  std::string error_;
};

}  // namespace hostvisor::testing
