// Shared folders (--share, virtio-fs) on the default guest, one boot on the
// software CPU with two shares: "work" (read-write) and "ro" (readonly=on).
//
//  - The default guest mounted both at /mnt/TAG.
//  - Host writes are visible to the guest and guest writes to the host,
//    owned by the user running hostvisor.
//  - One script of file-system semantics (rename over a file, unlink of an
//    open file, hard links, symlinks, mode bits and mtime, a 1 GiB sparse
//    file, appends from two processes) runs on the host directly and in the
//    guest on the share; both print the same and leave the same tree.
//  - The read-only share refuses writes.
//  - A snapshot (Ctrl-A s) is refused with the reason; the guest goes on.
//  - Escapes from the guest's shell (.. chains, absolute and relative
//    symlinks planted by the guest or by the host) reach no host file
//    outside the share: a canary beside it stays unread and unchanged.
// Crafted FUSE requests (IDs never handed out, swapped symlinks) are the
// server's unit tests (src/fs/fuse_server_test.cpp) and fuzz target.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "tests/linux/guest_console.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kBootTimeout{300};
constexpr seconds kCommandTimeout{180};

// Runs with its own directory as $1 (created), on the host's /bin/sh and
// on the guest's busybox sh alike.
constexpr const char* kSemanticsScript = R"SH(set -e
export TZ=UTC
mkdir "$1"
cd "$1"
echo one > a
echo two > b
mv b a
echo "rename over: $(cat a)"
echo kept > open
exec 3< open
rm open
echo "unlinked but open: $(cat <&3)"
exec 3<&-
echo data > f
ln f hard
echo more >> hard
echo "hard link: $(cat f | tr '\n' ' ')links=$(stat -c %h f)"
ln -s f sym
echo "symlink: $(readlink sym) -> $(cat sym | head -n 1)"
chmod 640 f
mkdir -m 751 d
echo "modes: $(stat -c %a f) $(stat -c %a d)"
touch -d '2001-02-03 04:05:06' f
echo "mtime: $(stat -c %Y f)"
dd if=/dev/zero of=sparse bs=1 count=1 seek=1073741823 2>/dev/null
echo "sparse: $(stat -c %s sparse) $([ "$(stat -c %b sparse)" -lt 1024 ] && echo holes)"
(for i in $(seq 150); do echo "A$i" >> log; done) &
(for i in $(seq 150); do echo "B$i" >> log; done) &
wait
echo "appends: $(wc -l < log | tr -d ' ') $(grep -c '^A' log) $(grep -c '^B' log)"
echo done
)SH";

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// name -> type, size, mode, link count, mtime (for files), content (small
// files): what the semantics script left, to compare host and guest runs.
std::map<std::string, std::string> describe_tree(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    struct stat st {};
    EXPECT_EQ(::lstat(entry.path().c_str(), &st), 0);
    std::ostringstream d;
    d << (S_ISDIR(st.st_mode)   ? "dir"
          : S_ISLNK(st.st_mode) ? "link"
                                : "file")
      << " mode=" << std::oct << (st.st_mode & 07777) << std::dec << " nlink=" << st.st_nlink;
    if (S_ISREG(st.st_mode)) {
      d << " size=" << st.st_size;
      if (st.st_size < 4096) d << " content=" << read_text(entry.path());
      if (entry.path().filename() == "f") d << " mtime=" << st.st_mtim.tv_sec;
    }
    if (S_ISLNK(st.st_mode)) d << " target=" << fs::read_symlink(entry.path()).string();
    // The appends' order differs run to run; their lines are checked by the script.
    if (entry.path().filename() == "log") d.str("log");
    out[fs::relative(entry.path(), root).string()] = d.str();
  }
  return out;
}

TEST(LinuxShare, GuestAndHostSeeEachOthersFilesSemanticsMatchTheHostReadonlyRefusesAndNothingEscapes) {
  char tmpl[] = "/tmp/hv-share-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const fs::path base = tmpl;
  // Removed however the test ends (a failed assertion returns early).
  struct RemoveOnExit {
    fs::path path;
    ~RemoveOnExit() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } remove_on_exit{base};
  const fs::path work = base / "work", ro = base / "ro", canary = base / "canary";
  fs::create_directories(work);
  fs::create_directories(ro);
  fs::create_directories(canary);
  std::ofstream(canary / "secret") << "host secret 7f3a";
  std::ofstream(ro / "readme") << "read me";
  std::ofstream(work / "from-host") << "written on the host";
  std::ofstream(work / "semantics.sh") << kSemanticsScript;
  // Host-planted ways out: the guest must not follow them to the host's files.
  fs::create_symlink(canary, work / "host-abs");
  fs::create_symlink("../canary", work / "host-rel");

  GuestConsole console;
  ASSERT_TRUE(console.start({HOSTVISOR_PATH, "run", "--accel", "emu", "--net", "none", "--memory", "512M",
                             "--snapshot-dir", (base / "snapshot").string(), "--share", work.string() + ",tag=work",
                             "--share", ro.string() + ",tag=ro,readonly=on"}))
      << console.failure();
  ASSERT_TRUE(console.wait_for_text("Type 'poweroff' to stop.", kBootTimeout)) << console.failure() << console.err();

  // Both mounted by the default guest's init.
  const std::string mounts = guest_ok(console, "grep virtiofs /proc/mounts", kCommandTimeout);
  EXPECT_NE(mounts.find("work /mnt/work virtiofs rw"), std::string::npos) << mounts;
  EXPECT_NE(mounts.find("ro /mnt/ro virtiofs"), std::string::npos) << mounts;

  // Host to guest, guest to host, as the host's user.
  EXPECT_EQ(guest_ok(console, "cat /mnt/work/from-host", kCommandTimeout), "written on the host");
  EXPECT_EQ(guest_ok(console, "stat -c '%u %g' /mnt/work/from-host", kCommandTimeout),
            std::to_string(::getuid()) + " " + std::to_string(::getgid()) + "\n");
  guest_ok(console, "echo 'written in the guest' > /mnt/work/from-guest && mkdir /mnt/work/guest-dir", kCommandTimeout);
  EXPECT_EQ(read_text(work / "from-guest"), "written in the guest\n");
  struct stat st {};
  ASSERT_EQ(::stat((work / "from-guest").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::getuid());
  EXPECT_EQ(st.st_gid, ::getgid());
  ASSERT_EQ(::stat((work / "guest-dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::getuid());

  // The same semantics on the host and through the share.
  const auto script_start = std::chrono::steady_clock::now();
  const std::string guest_out =
      guest_ok(console, "sh /mnt/work/semantics.sh /mnt/work/sem-guest 2>&1", std::chrono::seconds(400));
  std::fprintf(stderr, "semantics script in the guest: %.1f s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - script_start).count());
  const std::string host_command = "sh '" + (work / "semantics.sh").string() + "' '" + (base / "sem-host").string() +
                                   "' > '" + (base / "host.out").string() + "' 2>&1";
  ASSERT_EQ(std::system(host_command.c_str()), 0) << read_text(base / "host.out");
  const std::string host_out = read_text(base / "host.out");
  EXPECT_NE(host_out.find("done"), std::string::npos) << host_out;
  EXPECT_NE(host_out.find("appends: 300 150 150"), std::string::npos) << host_out;
  EXPECT_EQ(guest_out, host_out);
  EXPECT_EQ(describe_tree(work / "sem-guest"), describe_tree(base / "sem-host"));
  // The guest's sparse file is sparse on the host too.
  ASSERT_EQ(::stat((work / "sem-guest" / "sparse").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1 << 30);
  EXPECT_LT(st.st_blocks, 1024);

  // readonly=on: reads work, every write is refused.
  EXPECT_EQ(guest_ok(console, "cat /mnt/ro/readme", kCommandTimeout), "read me");
  const std::string refused =
      guest_ok(console,
               "for c in 'echo x > /mnt/ro/new' 'echo x >> /mnt/ro/readme' 'rm /mnt/ro/readme' 'mkdir /mnt/ro/d' "
               "'chmod 777 /mnt/ro/readme' 'ln -s readme /mnt/ro/l' 'mv /mnt/ro/readme /mnt/ro/moved'; do "
               "sh -c \"$c\" 2>/dev/null && echo \"allowed: $c\"; done; echo checked",
               kCommandTimeout);
  EXPECT_EQ(refused, "checked\n");
  EXPECT_EQ(guest_ok(console, "echo x > /mnt/ro/new 2>&1; true", kCommandTimeout).find("Read-only file system") !=
                std::string::npos,
            true);
  EXPECT_EQ(read_text(ro / "readme"), "read me");
  EXPECT_FALSE(fs::exists(ro / "new"));

  // Escapes from the guest's shell: .. chains, planted symlinks (the guest's
  // and the host's), each tried for reading and writing the canary.
  guest_ok(console,
           "ln -s /tmp/nowhere /mnt/work/guest-abs && ln -s ../../../../canary /mnt/work/guest-rel && "
           "ln -s " +
               canary.string() + " /mnt/work/guest-host-path",
           kCommandTimeout);
  const std::string escapes = guest_ok(
      console,
      "for p in /mnt/work/../canary /mnt/work/../../canary /mnt/work/../../../../../canary "
      "/mnt/work/host-abs /mnt/work/host-rel /mnt/work/guest-abs /mnt/work/guest-rel /mnt/work/guest-host-path "
      "/mnt/work/guest-dir/../../canary " +
          canary.string() +
          "; do "
          "cat $p/secret; echo pwned > $p/secret; echo planted > $p/new; done 2>/dev/null; "
          "echo tried",
      kCommandTimeout);
  EXPECT_EQ(escapes, "tried\n");
  EXPECT_EQ(read_text(canary / "secret"), "host secret 7f3a");
  size_t canary_entries = 0;
  for (const auto& e : fs::directory_iterator(canary)) {
    (void)e;
    ++canary_entries;
  }
  EXPECT_EQ(canary_entries, 1u);
  // The guest's symlinks are stored as symlinks with the text it gave.
  EXPECT_EQ(fs::read_symlink(work / "guest-rel").string(), "../../../../canary");

  // A snapshot is refused, with the reason, and the guest goes on.
  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
  ASSERT_TRUE(console.send_keys("\x01s")) << console.failure();
  EXPECT_TRUE(console.wait_for_text("cannot be snapshotted", seconds(30))) << console.failure();
  EXPECT_FALSE(fs::exists(base / "snapshot"));
  // The keys went to hostvisor, not the guest: ask the shell for a prompt.
  ASSERT_TRUE(console.send_line("")) << console.failure();
  EXPECT_EQ(guest_ok(console, "cat /mnt/work/from-host", kCommandTimeout), "written on the host");

  ASSERT_TRUE(console.wait_for_text("/ # ", kCommandTimeout)) << console.failure();
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(seconds(120));
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, 0) << console.err();
}

}  // namespace
}  // namespace hostvisor::testing
