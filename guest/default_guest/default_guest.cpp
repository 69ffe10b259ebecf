#include "guest/default_guest/default_guest.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "base/fd.h"
#include "base/process.h"
#include "guest/default_guest/cpio_writer.h"
#include "guest/default_guest/module_info.h"

namespace fs = std::filesystem;

namespace hostvisor::guest {

namespace {

constexpr char kManifest[] = "default-guest.manifest";
constexpr int kManifestVersion = 12;  // bump when the initramfs contents change (8: the guest agent, 9: + the balloon, 10: + virtiofs and its mounts, 11: + the power button and acpid, 12: + shares at a given path, ext4 and mke2fs for the /data disk)

std::string normalize_module_name(std::string name) {
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

Result<void> write_file_atomically(const fs::path& path, const std::string& data) {
  const fs::path tmp = path.string() + ".tmp" + std::to_string(::getpid());
  {
    UniqueFd fd = HV_TRY(open_file(tmp.string(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Error::from_errno("writing " + tmp.string());
      }
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) < 0) return Error::from_errno("fsync " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return Error(ErrorCode::kIo, "renaming " + tmp.string() + ": " + ec.message());
  return {};
}

// `apt-get download` into dir; returns the .deb's path.
Result<fs::path> download_package(const std::string& package, const fs::path& dir) {
  auto r = run_process({"apt-get", "download", "-q", package}, dir.string());
  if (!r) return std::move(r).error();
  if (r->exit_status != 0)
    return Error(ErrorCode::kNotFound, "could not download the Debian package " + package +
                                           " with apt-get (run `sudo apt-get update` if the package lists are "
                                           "missing or old): " +
                                           r->output.substr(r->output.size() > 300 ? r->output.size() - 300 : 0));
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(package + "_", 0) == 0 && entry.path().extension() == ".deb") return entry.path();
  }
  return Error(ErrorCode::kNotFound, "apt-get download " + package + " left no .deb in " + dir.string());
}

// The metapackage linux-image-cloud-amd64 depends on the versioned image
// package, which holds the kernel.
Result<std::string> versioned_kernel_package(const fs::path& meta_deb) {
  std::string depends = HV_TRY(run_process_checked({"dpkg-deb", "-f", meta_deb.string(), "Depends"}));
  std::string first = depends.substr(0, depends.find_first_of(" ,(|\n"));
  if (first.rfind("linux-image-", 0) != 0)
    return Error(ErrorCode::kCorrupt, meta_deb.string() + ": unexpected Depends: " + depends);
  return first;
}

Result<std::string> read_whole(const fs::path& p) { return read_file(p.string()); }

// A file of an unpacked package tree, its symlinks followed inside the tree
// (an absolute link names a path of the tree, not of this host).
Result<std::string> read_in_tree(const fs::path& root, fs::path relative) {
  for (int depth = 0; depth < 8; ++depth) {
    const fs::path path = root / relative;
    std::error_code ec;
    if (!fs::is_symlink(path, ec)) return read_whole(path);
    const fs::path target = fs::read_symlink(path, ec);
    if (ec) return Error(ErrorCode::kIo, "reading the link " + path.string() + ": " + ec.message());
    relative = target.is_absolute() ? target.relative_path() : (relative.parent_path() / target).lexically_normal();
    if (relative.empty() || *relative.begin() == "..")
      return Error(ErrorCode::kCorrupt, path.string() + " links out of its package");
  }
  return Error(ErrorCode::kCorrupt, (root / relative).string() + ": too many links");
}

// The shared libraries mke2fs (e2fsprogs 1.47) loads, by soname.
constexpr const char* kMkfsLibraries[] = {"libext2fs.so.2", "libcom_err.so.2", "libblkid.so.1",
                                          "libuuid.so.1",   "libe2p.so.2",     "libc.so.6"};

}  // namespace

std::string content_hash(const std::string& bytes) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash));
  return text;
}

std::string default_guest_cmdline(const std::string& console) {
  // tsc=reliable: the vCPU's TSC is invariant on both backends and carried
  // across snapshots; the kernel's clocksource watchdog, checking it against
  // the PM timer, reads a loaded host's scheduling as skew and prints
  // warnings into the console (and into what a script reads from it).
  if (console == "ttyS0") return "console=ttyS0 panic=-1 tsc=reliable";
  // The kernel's messages go to the UART until the virtio console driver is
  // loaded (earlyprintk), then to the console alone: Linux does not replay
  // them on a console that replaces a boot console, so nothing shows twice.
  return "console=" + console + " earlyprintk=ttyS0 panic=-1 tsc=reliable";
}

std::string default_guest_init_script() {
  return R"init(#!/bin/sh
# hostvisor default guest: early set-up, then busybox init (/etc/inittab),
# which gives the console a shell and turns poweroff/reboot into the real
# thing (ACPI power-off, reset).
#
# The shell runs on the kernel's console (console= on the command line). The
# kernel hands init that console as stdin/stdout/stderr only if it exists at
# boot; hvc0 (console=hvc0) appears when virtio_console is loaded below, so
# this script reopens /dev/console after the modules, and busybox init and
# its shell inherit it.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /mnt /tmp
# Ptys, for the guest agent's `exec -t` and `shell`.
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts 2>/dev/null
[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx
failed=""
while read -r module; do
  insmod "/lib/modules/$module" 2>/dev/null || failed="$failed $module"
done < /etc/hostvisor-modules
if (: <>/dev/console) 2>/dev/null; then
  exec <>/dev/console >&0 2>&0
fi
for module in $failed; do
  echo "hostvisor-init: could not load $module"
done
hostname hostvisor
mkdir -p /var/log
# mke2fs and mount look for what is mounted here.
ln -sf /proc/mounts /etc/mtab
# Shared folders (hostvisor run --share DIR,tag=TAG[,mount=PATH]): each at
# PATH, or /mnt/TAG. Linux 6.1 lists no virtio-fs tags in sysfs, so hostvisor
# passes them on the kernel command line as
# hostvisor.shares=TAG1,TAG2:/PATH2 (hostvisor refuses a PATH holding a
# space, ',' ':', quotes or glob characters; set -f all the same).
set -f
for argument in $(cat /proc/cmdline); do
  case "$argument" in
    hostvisor.shares=*)
      for share in $(echo "${argument#hostvisor.shares=}" | tr , ' '); do
        tag=${share%%:*}
        target=/mnt/$tag
        case "$share" in *:/*) target=${share#*:} ;; esac
        mkdir -p "$target"
        mount -t virtiofs "$tag" "$target" || echo "hostvisor-init: could not mount share $tag at $target"
      done
      ;;
  esac
done
set +f
# From here on the console is the shell's: the kernel's informational
# messages (a NIC's link coming up once the shell prompts, say) would land
# in the middle of what the user types and reads. Warnings and errors still
# show; dmesg keeps everything.
dmesg -n 5
# The data disk of a VM in hostvisor's library (hostvisor vm create): the
# virtio disk whose serial is hostvisor-data, wherever it sits among the
# disks. A blank one (its first 128 KiB all zero: no filesystem there) is
# formatted ext4 once; a disk that holds anything is never formatted, only
# mounted at /data.
for serial_file in /sys/block/vd*/serial; do
  [ "$(cat "$serial_file" 2>/dev/null)" = hostvisor-data ] || continue
  disk=${serial_file%/serial}
  disk=/dev/${disk##*/}
  if cmp -s -n 131072 "$disk" /dev/zero; then
    echo "hostvisor-init: formatting the data disk $disk as ext4 (once)"
    mkfs.ext4 -q -L data -E nodiscard,lazy_itable_init=1,lazy_journal_init=1,assume_storage_prezeroed=1 "$disk" \
      >/var/log/mkfs-data.log 2>&1 || echo "hostvisor-init: could not format $disk (see /var/log/mkfs-data.log)"
  fi
  mkdir -p /data
  mount -t ext4 "$disk" /data || echo "hostvisor-init: could not mount the data disk $disk at /data"
done
# Online at boot: loopback up, and a DHCP client per NIC. Each runs in the
# background (the shell's prompt never waits for a lease), stays for the
# renewals, and logs to /var/log rather than over the console the shell is on.
ip link set lo up
# The ACPI power button (hostvisor's powerdown, `hostvisor vm stop`) powers
# the guest off cleanly: busybox acpid reads the button's input events and
# runs /etc/acpi/PWRF/00000080.
acpid -l /var/log/acpid.log
# The guest agent (`hostvisor agent` on the host) on vsock port 1024; it
# says in its log when this VM has no vsock device.
if [ -x /sbin/hostvisor-agent ]; then
  /sbin/hostvisor-agent </dev/null >/var/log/hostvisor-agent.log 2>&1 &
fi
for net_device in /sys/class/net/*; do
  interface=${net_device##*/}
  [ "$interface" = lo ] && continue
  ip link set "$interface" up
  udhcpc -f -i "$interface" -s /etc/udhcpc/hostvisor.script -t 10 -T 1 -A 5 \
    </dev/null >"/var/log/udhcpc.$interface.log" 2>&1 &
done
echo "hostvisor default guest: Linux $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPU(s). Type 'poweroff' to stop."
exec /bin/busybox init
)init";
}

std::string default_guest_dhcp_script() {
  return R"(#!/bin/sh
# hostvisor default guest: udhcpc runs this with the event in $1 and the
# lease in the environment (interface, ip, mask, router, dns, domain).
# Every NIC gets its own default route, the first NIC's preferred (a lower
# metric), so a second NIC neither fails nor takes the first one's place.
metric=$((100 + $(cat "/sys/class/net/$interface/ifindex" 2>/dev/null || echo 0)))
configure() {
  ip -4 addr flush dev "$interface"
  ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
  for gateway in $router; do
    ip route add default via "$gateway" dev "$interface" metric "$metric" && break
  done
  # Written whole and renamed, so a reader never sees half a file.
  {
    [ -n "$domain" ] && echo "search $domain"
    for server in $dns; do echo "nameserver $server"; done
  } > /etc/resolv.conf.$interface
  mv /etc/resolv.conf.$interface /etc/resolv.conf
}
case "$1" in
  deconfig)
    ip link set "$interface" up
    ip -4 addr flush dev "$interface"
    ;;
  bound)
    configure
    ;;
  renew)
    # The same address again: keep it, so open connections live on.
    ip -4 addr show dev "$interface" | grep -q " $ip/" || configure
    ;;
esac
exit 0
)";
}

std::string default_guest_inittab() {
  return "::respawn:-/bin/cttyhack /bin/sh -l\n"
         "::ctrlaltdel:/bin/reboot\n"
         "::shutdown:/bin/sync\n"
         "::shutdown:/bin/umount -a -r\n";
}

Result<std::string> default_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/hostvisor";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/hostvisor";
  return Error(ErrorCode::kNotFound, "neither XDG_CACHE_HOME nor HOME is set: cannot place hostvisor's cache");
}

std::string find_guest_agent() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && fs::exists(self.parent_path() / "hostvisor-agent", ec))
    return (self.parent_path() / "hostvisor-agent").string();
#ifdef HV_AGENT_PATH
  if (fs::exists(HV_AGENT_PATH, ec)) return HV_AGENT_PATH;
#endif
  return "";
}

Result<DefaultGuest> prepare_default_guest(const DefaultGuestOptions& options) {
  auto say = [&](const std::string& line) {
    if (options.progress) options.progress(line);
  };
  const fs::path cache =
      options.cache_dir.empty() ? fs::path(HV_TRY(default_cache_dir())) : fs::path(options.cache_dir);
  std::error_code ec;
  fs::create_directories(cache, ec);
  if (ec) return Error(ErrorCode::kIo, "creating the cache directory " + cache.string() + ": " + ec.message());

  DefaultGuest guest;
  guest.kernel_path = (cache / "vmlinuz").string();
  guest.initrd_path = (cache / "initrd.img").string();
  guest.cmdline = default_guest_cmdline(options.console);

  std::string agent;
  if (!options.agent_path.empty()) {
    auto bytes = read_whole(options.agent_path);
    if (!bytes) return bytes.error().with_context("the guest agent");
    agent = std::move(*bytes);
  }
  // What the initramfs holds besides the packages' files: a change to any of
  // it (a new agent, a changed init) makes the cached build stale.
  std::string own_files = agent + default_guest_init_script() + default_guest_inittab() + default_guest_dhcp_script();
  for (const auto& m : options.modules) own_files += m + "\n";
  for (const auto& p : options.mkfs_packages) own_files += p + "\n";
  const std::string contents_hash = content_hash(own_files);

  // A complete earlier build is reused as it is, if it holds the same files.
  if (auto manifest = read_whole(cache / kManifest); manifest.ok()) {
    std::istringstream in(*manifest);
    int version = 0;
    std::string release, built_contents;
    in >> version >> release >> built_contents;
    if (version == kManifestVersion && !release.empty() && built_contents == contents_hash &&
        fs::exists(guest.kernel_path) && fs::exists(guest.initrd_path)) {
      guest.kernel_release = release;
      return guest;
    }
  }

  say("building the default guest in " + cache.string() + " (once)");
  std::string work_template = (cache / ".build-XXXXXX").string();
  if (!::mkdtemp(work_template.data())) return Error::from_errno("creating a work directory in " + cache.string());
  const fs::path work(work_template);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } cleanup{work};

  say("downloading " + options.kernel_package + " and " + options.busybox_package + " with apt-get");
  const fs::path meta = HV_TRY(download_package(options.kernel_package, work));
  const std::string image_package = HV_TRY(versioned_kernel_package(meta));
  const fs::path image_deb = HV_TRY(download_package(image_package, work));
  const fs::path busybox_deb = HV_TRY(download_package(options.busybox_package, work));
  HV_TRY(run_process_checked({"dpkg-deb", "-x", image_deb.string(), (work / "kernel").string()}));
  HV_TRY(run_process_checked({"dpkg-deb", "-x", busybox_deb.string(), (work / "busybox").string()}));
  if (!options.mkfs_packages.empty()) say("downloading mke2fs (" + options.mkfs_packages.front() + ") and its libraries");
  for (const std::string& package : options.mkfs_packages) {
    const fs::path deb = HV_TRY(download_package(package, work));
    HV_TRY(run_process_checked({"dpkg-deb", "-x", deb.string(), (work / "mkfs").string()}));
  }

  // The kernel and its release name.
  fs::path vmlinuz;
  for (const auto& e : fs::directory_iterator(work / "kernel" / "boot"))
    if (e.path().filename().string().rfind("vmlinuz-", 0) == 0) vmlinuz = e.path();
  if (vmlinuz.empty()) return Error(ErrorCode::kCorrupt, image_deb.string() + " holds no /boot/vmlinuz-*");
  guest.kernel_release = vmlinuz.filename().string().substr(8);

  // Index the modules by their normalized name.
  const fs::path module_root = work / "kernel" / "lib" / "modules" / guest.kernel_release;
  std::map<std::string, fs::path> module_files;
  for (const auto& e : fs::recursive_directory_iterator(module_root / "kernel")) {
    if (e.path().extension() == ".ko") module_files[normalize_module_name(e.path().stem().string())] = e.path();
  }

  // Dependency closure, in load order (dependencies first).
  std::vector<fs::path> load_order;
  std::set<std::string> done, visiting;
  std::function<Result<void>(const std::string&)> visit = [&](const std::string& raw) -> Result<void> {
    const std::string name = normalize_module_name(raw);
    if (done.count(name)) return {};
    if (visiting.count(name)) return Error(ErrorCode::kCorrupt, "kernel module dependency loop at " + name);
    auto it = module_files.find(name);
    if (it == module_files.end())
      return Error(ErrorCode::kNotFound, "kernel module " + name + " is not in " + image_package +
                                             " (is it built in? then drop it from the list)");
    visiting.insert(name);
    const std::string bytes = HV_TRY(read_whole(it->second));
    auto deps = module_depends(bytes);
    if (!deps) return std::move(deps).error().with_context(it->second.string());
    for (const auto& d : *deps) HV_TRY(visit(d));
    visiting.erase(name);
    done.insert(name);
    load_order.push_back(it->second);
    return {};
  };
  for (const auto& m : options.modules) HV_TRY(visit(m));

  // The initramfs.
  CpioWriter cpio;
  for (const char* dir : {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "etc",
                          "mnt", "lib", "lib/modules"})
    HV_TRY(cpio.add_directory(dir));
  HV_TRY(cpio.add_char_device("dev/console", 5, 1));
  HV_TRY(cpio.add_char_device("dev/null", 1, 3, 0666));
  HV_TRY(cpio.add_char_device("dev/ttyS0", 4, 64));
  const std::string busybox = HV_TRY(read_whole(work / "busybox" / "bin" / "busybox"));
  HV_TRY(cpio.add_file("bin/busybox", busybox, 0755));
  HV_TRY(cpio.add_symlink("bin/sh", "busybox"));
  HV_TRY(cpio.add_file("init", default_guest_init_script(), 0755));
  std::string module_list;
  for (const auto& path : load_order) {
    const std::string file = path.filename().string();
    HV_TRY(cpio.add_file("lib/modules/" + file, HV_TRY(read_whole(path))));
    module_list += file + "\n";
  }
  HV_TRY(cpio.add_file("etc/hostvisor-modules", module_list));
  HV_TRY(cpio.add_file("etc/inittab", default_guest_inittab()));
  HV_TRY(cpio.add_directory("etc/udhcpc"));
  HV_TRY(cpio.add_file("etc/udhcpc/hostvisor.script", default_guest_dhcp_script(), 0755));
  for (const char* dir : {"etc/acpi", "etc/acpi/PWRF"}) HV_TRY(cpio.add_directory(dir));
  HV_TRY(cpio.add_file("etc/acpi/PWRF/00000080", "#!/bin/sh\npoweroff\n", 0755));
  HV_TRY(cpio.add_file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"));
  HV_TRY(cpio.add_file("etc/group", "root:x:0:\n"));
  if (!agent.empty()) HV_TRY(cpio.add_file("sbin/hostvisor-agent", agent, 0755));
  if (!options.mkfs_packages.empty()) {
    // The dynamic loader where the program's PT_INTERP names it, and the
    // libraries in the multiarch directory it searches without a cache.
    const fs::path tree = work / "mkfs";
    HV_TRY(cpio.add_file("sbin/mkfs.ext4", HV_TRY(read_in_tree(tree, "sbin/mke2fs")), 0755));
    if (fs::exists(tree / "etc/mke2fs.conf")) HV_TRY(cpio.add_file("etc/mke2fs.conf", HV_TRY(read_whole(tree / "etc/mke2fs.conf"))));
    for (const char* dir : {"lib64", "lib/x86_64-linux-gnu"}) HV_TRY(cpio.add_directory(dir));
    HV_TRY(cpio.add_file("lib64/ld-linux-x86-64.so.2",
                         HV_TRY(read_in_tree(tree, "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")), 0755));
    for (const char* library : kMkfsLibraries) {
      auto bytes = read_in_tree(tree, fs::path("lib/x86_64-linux-gnu") / library);
      if (!bytes) bytes = read_in_tree(tree, fs::path("usr/lib/x86_64-linux-gnu") / library);
      if (!bytes) return bytes.error().with_context(std::string(library) + " (for mke2fs)");
      HV_TRY(cpio.add_file(std::string("lib/x86_64-linux-gnu/") + library, *bytes, 0755));
    }
  }
  const std::vector<uint8_t> archive = cpio.finish();

  HV_TRY(write_file_atomically(guest.kernel_path, HV_TRY(read_whole(vmlinuz))));
  HV_TRY(write_file_atomically(guest.initrd_path, std::string(archive.begin(), archive.end())));
  // The manifest goes last: its presence means the build is complete.
  HV_TRY(write_file_atomically(
      cache / kManifest, std::to_string(kManifestVersion) + " " + guest.kernel_release + " " + contents_hash + "\n"));
  say("default guest ready: Linux " + guest.kernel_release + ", " + std::to_string(load_order.size()) +
      " modules, initramfs " + std::to_string(archive.size() / 1024) + " KiB");
  return guest;
}

}  // namespace hostvisor::guest
