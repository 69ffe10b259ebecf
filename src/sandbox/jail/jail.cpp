#include "sandbox/jail/jail.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include "base/fd.h"
#include "sandbox/jail/sandbox.h"

namespace hostvisor::sandbox {

namespace {

namespace fs = std::filesystem;

// Where the new root is built: any directory will do, as every source is
// held by a descriptor before the tmpfs covers it, and nothing outside this
// mount namespace sees it.
constexpr const char* kNewRoot = "/tmp";

volatile pid_t g_child = 0;

void forward_signal(int signal) {
  if (g_child > 0) ::kill(g_child, signal);
}

// The parent: passes stop signals on and ends as the child did.
[[noreturn]] void wait_as_parent(pid_t child) {
  g_child = child;
  struct sigaction action {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  for (int signal : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) ::sigaction(signal, &action, nullptr);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) ::_exit(WEXITSTATUS(status));
  ::_exit(128 + WTERMSIG(status));
}

Result<void> write_proc(pid_t pid, const char* name, const std::string& text) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  UniqueFd fd = HV_TRY(open_file(path, O_WRONLY));
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return Error::from_errno("writing " + path);
  return ok();
}

bool is_device(FsAccess access) { return access == FsAccess::kDevice; }

bool writable(FsAccess access) {
  return access == FsAccess::kReadWrite || access == FsAccess::kCreate || access == FsAccess::kShare ||
         access == FsAccess::kDevice;
}

// The modes of the host's directories above (and at) the paths bound into
// the jail, read before the new root's tmpfs covers them (it is mounted on
// /tmp, where such paths often are).
using HostModes = std::map<std::string, mode_t>;

void record_host_modes(const fs::path& path, HostModes& modes) {
  fs::path host = "/";
  for (const fs::path& part : path.relative_path()) {
    host /= part;
    struct stat st {};
    if (!modes.contains(host.string()) && ::stat(host.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      modes[host.string()] = st.st_mode & 07777;
  }
}

// Makes the directories of `host_dir` that are missing beneath `root`, each
// with the mode of the host's directory of that name (0755 where the host
// has none): a private directory stays private in the jail (the switches'
// directory is refused when its parent is open to other users).
Result<void> make_directories_like_the_host(const fs::path& root, const fs::path& host_dir, const HostModes& modes) {
  fs::path at = root, host = "/";
  for (const fs::path& part : host_dir.relative_path()) {
    at /= part;
    host /= part;
    const auto found = modes.find(host.string());
    const mode_t mode = found != modes.end() ? found->second : 0755;
    if (::mkdir(at.c_str(), mode) == 0) {
      if (::chmod(at.c_str(), mode) != 0) return Error::from_errno("chmod " + at.string());  // past the umask
    } else if (errno != EEXIST) {
      return Error::from_errno("making " + at.string());
    }
  }
  return ok();
}

// Makes the mount point for the host's `path` (a directory, or an empty
// file for a file) in the new root, unless the path already shows there
// through an earlier bind mount of one of its directories.
Result<void> make_mount_point(const fs::path& root, const fs::path& path, bool directory, const HostModes& modes) {
  const fs::path target = root / path.relative_path();
  std::error_code error;
  if (fs::exists(target, error)) return ok();
  HV_TRY(make_directories_like_the_host(root, directory ? path : path.parent_path(), modes));
  if (!directory) {
    UniqueFd file(::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    if (!file.valid()) return Error::from_errno("making " + target.string());
  }
  return ok();
}

struct Source {
  std::string path;  // absolute, as the VM names it
  FsAccess access;
  UniqueFd fd;  // O_PATH, opened before the tmpfs covers anything
  bool directory = false;
};

// The child's half: mounts, the new root, pivot.
Result<void> build_root(const JailSpec& spec) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return Error::from_errno("making the mounts private");
  std::vector<Source> sources;
  HostModes host_modes;
  for (const FsRule& rule : spec.paths) {
    const std::string path = fs::absolute(rule.path).lexically_normal().string();
    // /proc comes anew from this PID namespace's own proc.
    if (path == "/proc" || path.rfind("/proc/", 0) == 0) continue;
    UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
    if (!fd.valid()) {
      if (errno == ENOENT && rule.optional) continue;
      return Error::from_errno(path);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return Error::from_errno(path);
    sources.push_back({path, rule.access, std::move(fd), S_ISDIR(st.st_mode)});
    record_host_modes(path, host_modes);
  }
  // Directories before what lies beneath them.
  std::sort(sources.begin(), sources.end(), [](const Source& a, const Source& b) { return a.path < b.path; });

  if (::mount("tmpfs", kNewRoot, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0)
    return Error::from_errno("a tmpfs for the new root");
  const fs::path root(kNewRoot);
  // A path beneath one already bound, which gives it at least the access it
  // needs, shows through that mount (Landlock narrows it). It is not bound
  // again: a mount point cannot be renamed over, and a snapshot installs its
  // overlay by renaming it over the disk's name.
  std::vector<std::pair<std::string, bool>> bound;  // path, writable
  auto shows_through = [&bound](const Source& source) {
    for (const auto& [path, is_writable] : bound)
      if (source.path.rfind(path == "/" ? path : path + "/", 0) == 0 && (is_writable || !writable(source.access)))
        return true;
    return false;
  };
  for (const Source& source : sources) {
    if (shows_through(source)) continue;
    bound.emplace_back(source.path, writable(source.access));
    const fs::path target = root / fs::path(source.path).relative_path();
    HV_TRY(make_mount_point(root, source.path, source.directory, host_modes));
    const std::string from = "/proc/self/fd/" + std::to_string(source.fd.get());
    if (::mount(from.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
      return Error::from_errno("binding " + source.path);
    unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID;
    if (!writable(source.access)) flags |= MS_RDONLY;
    if (!is_device(source.access)) flags |= MS_NODEV;
    // The mount's own flags may be locked (inherited from the host): then
    // Landlock alone narrows it.
    (void)::mount(nullptr, target.c_str(), nullptr, flags, nullptr);
  }
  const fs::path proc = root / "proc";
  HV_TRY(make_mount_point(root, "/proc", true, {}));
  if (::mount("proc", proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    return Error::from_errno("mounting this PID namespace's /proc");
  // pivot_root(new, new): the old root is stacked beneath and detached.
  if (::chdir(kNewRoot) != 0) return Error::from_errno("chdir to the new root");
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return Error::from_errno("pivot_root");
  if (::umount2(".", MNT_DETACH) != 0) return Error::from_errno("detaching the old root");
  if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0)
    return Error::from_errno("making the new root read-only");
  return ok();
}

}  // namespace

Result<JailOutcome> enter_jail(const JailSpec& spec) {
  const unsigned threads = HV_TRY(thread_count());
  if (threads != 1)
    return Error(ErrorCode::kInternal,
                 "--jail must be entered before any thread starts (" + std::to_string(threads) + " threads run)");
  const bool root = ::geteuid() == 0;
  if ((spec.uid || spec.gid) && !root)
    return Error(ErrorCode::kInvalidArgument, "--jail-uid and --jail-gid need root (others run as themselves)");
  JailOutcome outcome{.new_network = spec.new_network,
                      .outside_uid = spec.uid.value_or(::geteuid()),
                      .outside_gid = spec.gid.value_or(::getegid())};
  std::error_code cwd_error;
  const fs::path cwd = fs::current_path(cwd_error);
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) return Error::from_errno("pipe");
  UniqueFd go_read(go[0]), go_write(go[1]);
  std::fflush(stdout);
  std::fflush(stderr);
  unsigned long flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | SIGCHLD;
  if (spec.new_network) flags |= CLONE_NEWNET;
  const long pid = ::syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr);
  if (pid < 0) {
    if (errno == EPERM || errno == ENOSPC || errno == EINVAL)
      return Error(ErrorCode::kUnsupported,
                   std::string("new namespaces (unprivileged user namespaces?): ") + std::strerror(errno));
    return Error::from_errno("clone");
  }
  if (pid > 0) {
    go_read.reset();
    // The maps are written from outside: only a process with CAP_SETUID in
    // this namespace maps a uid other than its own.
    auto mapped = [&]() -> Result<void> {
      HV_TRY(write_proc(static_cast<pid_t>(pid), "setgroups", "deny"));
      HV_TRY(write_proc(static_cast<pid_t>(pid), "uid_map", "0 " + std::to_string(outcome.outside_uid) + " 1\n"));
      HV_TRY(write_proc(static_cast<pid_t>(pid), "gid_map", "0 " + std::to_string(outcome.outside_gid) + " 1\n"));
      return ok();
    }();
    if (!mapped) {
      ::kill(static_cast<pid_t>(pid), SIGKILL);
      ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
      return mapped.error().with_context("--jail: the user namespace's ids");
    }
    (void)!::write(go_write.get(), "g", 1);
    go_write.reset();
    wait_as_parent(static_cast<pid_t>(pid));
  }
  // The child. It goes when the parent goes (a SIGKILL of the parent, e.g.
  // by the daemon, must not leave the VM running).
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  go_write.reset();
  char byte = 0;
  if (::read(go_read.get(), &byte, 1) != 1) ::_exit(1);
  auto built = [&]() -> Result<void> {
    if (::setresgid(0, 0, 0) != 0) return Error::from_errno("setresgid");
    if (::setresuid(0, 0, 0) != 0) return Error::from_errno("setresuid");
    HV_TRY(build_root(spec));
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0 && ::chdir("/") != 0) return Error::from_errno("chdir");
    return ok();
  }();
  if (!built) {
    std::fprintf(stderr, "hostvisor: --jail: %s\n", built.error().message().c_str());
    ::_exit(1);
  }
  return outcome;
}

}  // namespace hostvisor::sandbox
