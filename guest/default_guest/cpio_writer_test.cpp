#include "guest/default_guest/cpio_writer.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/fd.h"
#include "base/process.h"

namespace hostvisor::guest {
namespace {

// GNU cpio is the referee: it must list and unpack what we write.
TEST(CpioWriter, GnuCpioUnpacksTheArchive) {
  ASSERT_EQ(::system("command -v cpio >/dev/null"), 0) << "cpio is required: run scripts/setup-host.sh";
  CpioWriter w;
  ASSERT_TRUE(w.add_directory("bin").ok());
  ASSERT_TRUE(w.add_file("bin/tool", "#!/bin/sh\necho hi\n", 0755).ok());
  ASSERT_TRUE(w.add_symlink("bin/alias", "tool").ok());
  ASSERT_TRUE(w.add_file("odd", std::string(4099, 'x')).ok());  // a length that needs padding
  ASSERT_TRUE(w.add_char_device("console", 5, 1).ok());
  auto archive = w.finish();
  ASSERT_EQ(archive.size() % 4, 0u);

  auto dir = std::filesystem::temp_directory_path() / ("hv-cpio-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "out");
  std::ofstream(dir / "a.cpio", std::ios::binary).write(reinterpret_cast<const char*>(archive.data()), archive.size());
  auto listing = run_process_checked({"sh", "-c", "cpio -it --quiet < a.cpio"}, dir.string());
  ASSERT_TRUE(listing.ok()) << listing.error().message();
  EXPECT_EQ(*listing, "bin\nbin/tool\nbin/alias\nodd\nconsole\n");
  // Unpack everything but the device node (mknod may be refused).
  auto unpack = run_process_checked(
      {"sh", "-c", "cd out && cpio -id --quiet --no-absolute-filenames 'bin*' odd < ../a.cpio"}, dir.string());
  ASSERT_TRUE(unpack.ok()) << unpack.error().message();
  EXPECT_EQ(*read_file((dir / "out/bin/tool").string()), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(read_file((dir / "out/odd").string())->size(), 4099u);
  EXPECT_EQ(std::filesystem::read_symlink(dir / "out/bin/alias"), "tool");
  struct stat st;
  ASSERT_EQ(::stat((dir / "out/bin/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  auto verbose = run_process_checked({"sh", "-c", "cpio -itv --quiet < a.cpio"}, dir.string());
  ASSERT_TRUE(verbose.ok());
  EXPECT_NE(verbose->find("crw-------"), std::string::npos) << *verbose;
  std::filesystem::remove_all(dir);
}

TEST(CpioWriter, RejectsPathsThatEscapeTheRoot) {
  CpioWriter w;
  EXPECT_FALSE(w.add_file("/etc/passwd", "").ok());
  EXPECT_FALSE(w.add_file("a/../../b", "").ok());
  EXPECT_FALSE(w.add_directory("").ok());
}

}  // namespace
}  // namespace hostvisor::guest
