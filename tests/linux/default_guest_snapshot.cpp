#include "tests/linux/default_guest_snapshot.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "guest/default_guest/default_guest.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kBootTimeout{240};
constexpr seconds kCommandTimeout{60};
constexpr seconds kSaveTimeout{120};

fs::path key_path(const fs::path& dir) { return dir.string() + ".key"; }
fs::path boot_log_path(const fs::path& dir) { return dir.string() + ".boot.log"; }

// "PATH SIZE MTIME_NS" of a file, or "PATH missing".
std::string file_stamp(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return path.string() + " missing";
  return path.string() + " " + std::to_string(st.st_size) + " " +
         std::to_string(st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Everything the snapshot depends on; a snapshot made from anything else is stale.
std::string current_key() {
  std::string key = "hostvisor " + file_stamp(HOSTVISOR_PATH) + "\nmachine";
  for (const auto& arg : kDefaultGuestMachine) key += " " + arg;
  key += "\n";
  auto cache = guest::default_cache_dir();
  if (!cache) return key + "no default guest cache: " + cache.error().message() + "\n";
  const fs::path dir(*cache);
  key += "manifest " + read_file(dir / "default-guest.manifest") + "\n";
  key += "kernel " + file_stamp(dir / "vmlinuz") + "\ninitrd " + file_stamp(dir / "initrd.img") + "\n";
  return key;
}

bool usable(const fs::path& dir) { return fs::exists(dir / "header") && read_file(key_path(dir)) == current_key(); }

}  // namespace

DefaultGuestSnapshot::DefaultGuestSnapshot(bool* made, bool fresh) : dir_(DEFAULT_GUEST_SNAPSHOT_DIR) {
  if (made) *made = false;
  const std::string lock = dir_.string() + ".lock";
  lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    error_ = "opening " + lock + ": " + std::strerror(errno);
    return;
  }
  // The common case: a usable snapshot, checked and held under a shared lock.
  if (!fresh) {
    ::flock(lock_fd_, LOCK_SH);
    if (usable(dir_)) return;
    ::flock(lock_fd_, LOCK_UN);
  }
  // Another test may have made it while this one waited for the lock.
  ::flock(lock_fd_, LOCK_EX);
  if (fresh || !usable(dir_)) {
    error_ = make();
    if (!error_.empty()) return;
    if (made) *made = true;
  }
  // Held shared from here: a maker waits until this test is done with it.
  ::flock(lock_fd_, LOCK_SH);
}

DefaultGuestSnapshot::~DefaultGuestSnapshot() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
}

std::string DefaultGuestSnapshot::make() {
  std::error_code ec;
  fs::remove(key_path(dir_), ec);
  fs::remove(boot_log_path(dir_), ec);
  GuestConsole console;
  std::vector<std::string> argv = {HOSTVISOR_PATH, "run"};
  argv.insert(argv.end(), kDefaultGuestMachine.begin(), kDefaultGuestMachine.end());
  argv.insert(argv.end(), {"--snapshot-dir", dir_.string()});
  if (!console.start(argv)) return console.failure();
  if (!console.wait_for_text("Type 'poweroff' to stop.", kBootTimeout)) return "booting: " + console.failure();
  // Online before the snapshot, so every clone is at once: the DHCP client
  // the init script starts has configured the route and resolv.conf.
  auto online = console.run(
      "for i in $(seq 300); do ip route show default dev eth0 | grep -q via && grep -q nameserver /etc/resolv.conf && "
      "break; sleep 0.2; done; ip route show default dev eth0 | grep via",
      kCommandTimeout);
  if (!online) return "waiting for the DHCP lease: " + console.failure();
  if (online->status != 0) return "the guest got no DHCP lease from the NAT:\n" + online->output;
  if (!console.wait_for_text("/ # ", kCommandTimeout)) return console.failure();
  if (!console.send_keys("\x01S")) return console.failure();
  if (!console.wait_for_regex(std::regex(R"(\[hostvisor: snapshot written to [^\]]*; quitting\])"), kSaveTimeout))
    return "writing the snapshot: " + console.failure() + "\nstderr:\n" + console.err();
  const auto status = console.wait_exit(kSaveTimeout);
  if (!status || *status != 0) return "hostvisor did not end cleanly after the snapshot: " + console.failure();
  std::ofstream(boot_log_path(dir_), std::ios::binary) << console.out();
  std::ofstream(key_path(dir_)) << current_key();
  if (!usable(dir_)) return "the snapshot in " + dir_.string() + " is not usable after making it";
  return "";
}

std::string DefaultGuestSnapshot::boot_output() const { return read_file(boot_log_path(dir_)); }

bool DefaultGuestSnapshot::start_clone(GuestConsole& console, const std::vector<std::string>& extra) const {
  std::vector<std::string> argv = {HOSTVISOR_PATH, "run", "--restore", dir_.string(), "--clone"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return console.start(argv) && console.send_line("");
}

}  // namespace hostvisor::testing
