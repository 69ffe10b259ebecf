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
//  - A C project (three files, a header, a Makefile) built with make and
//    tcc inside the share gives the same objects, program and output as
//    the host's build of it, and the objects belong to the host's user.
//    tcc, make and what they need come from the host's Debian packages in
//    a second cpio archive after the default guest's initramfs.
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
#include <string>
#include <vector>

#include "guest/default_guest/default_guest.h"
#include "tests/linux/guest_console.h"
#include "tests/linux/initramfs_appendix.h"
#include "tests/linux/tcc_toolchain.h"

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

// A small C project (three files, a header, a Makefile), built with tcc
// and make in the guest inside the share and on the host beside it.
const std::map<std::string, std::string> kCProject = {
    {"project.h", R"C(#ifndef PROJECT_H
#define PROJECT_H
#include <stddef.h>
#include <stdint.h>

uint32_t crc32_of(const void *data, size_t length);
void sort_numbers(int *numbers, size_t count);
double mean_of(const int *numbers, size_t count);
#endif
)C"},
    {"crc.c", R"C(#include "project.h"

uint32_t crc32_of(const void *data, size_t length) {
  static uint32_t table[256];
  if (!table[1])
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
  const unsigned char *p = data;
  uint32_t crc = 0xffffffffu;
  while (length--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}
)C"},
    {"stats.c", R"C(#include <stdlib.h>
#include "project.h"

static int compare(const void *a, const void *b) {
  return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

void sort_numbers(int *numbers, size_t count) { qsort(numbers, count, sizeof *numbers, compare); }

double mean_of(const int *numbers, size_t count) {
  long long sum = 0;
  for (size_t i = 0; i < count; i++) sum += numbers[i];
  return count ? (double)sum / count : 0.0;
}
)C"},
    {"main.c", R"C(#include <stdio.h>
#include <string.h>
#include "project.h"

int main(void) {
  const char *text = "The quick brown fox jumps over the lazy dog";
  printf("crc32: %08x\n", crc32_of(text, strlen(text)));
  int numbers[16];
  unsigned seed = 12345;
  for (int i = 0; i < 16; i++) numbers[i] = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 1000 - 500;
  sort_numbers(numbers, 16);
  printf("sorted:");
  for (int i = 0; i < 16; i++) printf(" %d", numbers[i]);
  printf("\nmean: %.4f\n", mean_of(numbers, 16));
  char line[64];
  snprintf(line, sizeof line, "%s|%5.2e|%-6s|", "fmt", 31415.9265, "ok");
  puts(line);
  return 0;
}
)C"},
    {"Makefile",
     "CC = tcc\n"
     "CFLAGS = -Wall -O2\n"
     "OBJECTS = main.o crc.o stats.o\n"
     "\n"
     "hello: $(OBJECTS)\n"
     "\t$(CC) -o $@ $(OBJECTS)\n"
     "\n"
     "%.o: %.c project.h\n"
     "\t$(CC) $(CFLAGS) -c $<\n"},
};
const char* const kCProjectOutputs[] = {"main.o", "crc.o", "stats.o", "hello"};

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

  // The C project, in the share and in a host directory beside it; the
  // guest's compiler and make come in a second initramfs archive after the
  // default guest's own.
  const fs::path guest_project = work / "cproject", host_project = base / "cproject-host";
  fs::create_directories(guest_project);
  fs::create_directories(host_project);
  std::vector<std::string> sources;
  for (const auto& [name, text] : kCProject) {
    std::ofstream(guest_project / name) << text;
    std::ofstream(host_project / name) << text;
    if (name.ends_with(".c")) sources.push_back((host_project / name).string());
  }
  auto default_guest = guest::prepare_default_guest({});
  ASSERT_TRUE(default_guest) << default_guest.error().message();
  InitramfsAppendix toolchain;
  auto added = add_tcc_toolchain(toolchain, sources);
  ASSERT_TRUE(added) << added.error().message();
  const std::string initrd = (base / "initrd-with-tcc.img").string();
  auto written = toolchain.write_after(default_guest->initrd_path, initrd);
  ASSERT_TRUE(written) << written.error().message();

  GuestConsole console;
  // No --kernel: the default guest's kernel and command line (with the
  // shares' tags), and this initramfs.
  // --seccomp=kill (also the default): the share workers serve under their filter.
  ASSERT_TRUE(console.start({HOSTVISOR_PATH, "run", "--seccomp=kill", "--accel", "emu", "--net", "none", "--memory",
                             "512M", "--initrd", initrd, "--snapshot-dir", (base / "snapshot").string(), "--share",
                             work.string() + ",tag=work", "--share", ro.string() + ",tag=ro,readonly=on"}))
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

  // A C build inside the share: the same objects, program and output as the
  // host's build of the same files with the same tcc.
  const auto build_start = std::chrono::steady_clock::now();
  const std::string guest_build =
      guest_ok(console, "cd /mnt/work/cproject && make -s 2>&1 && ./hello; cd /", kCommandTimeout);
  std::fprintf(stderr, "C project build in the guest: %.1f s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - build_start).count());
  const std::string host_build_command =
      "cd '" + host_project.string() + "' && make -s > ../host-build.out 2>&1 && ./hello >> ../host-build.out 2>&1";
  ASSERT_EQ(std::system(host_build_command.c_str()), 0) << read_text(base / "host-build.out");
  const std::string host_build = read_text(base / "host-build.out");
  EXPECT_NE(host_build.find("crc32: 414fa339"), std::string::npos) << host_build;
  EXPECT_EQ(guest_build, host_build);
  for (const char* output : kCProjectOutputs) {
    ASSERT_EQ(::stat((guest_project / output).c_str(), &st), 0) << output;
    EXPECT_EQ(st.st_uid, ::getuid()) << output;
    EXPECT_EQ(st.st_gid, ::getgid()) << output;
    EXPECT_EQ(read_text(guest_project / output), read_text(host_project / output)) << output << " differs";
  }
  // The program the guest built runs on the host too.
  const std::string run_guest_program =
      "'" + (guest_project / "hello").string() + "' > '" + (base / "guest-program.out").string() + "' 2>&1";
  EXPECT_EQ(std::system(run_guest_program.c_str()), 0);
  EXPECT_EQ(read_text(base / "guest-program.out"), host_build);

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
