#include "vmm/console_output.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace hostvisor {
namespace {

std::span<const uint8_t> bytes_of(const std::string& text) {
  return std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

TEST(ConsoleOutput, TheRingKeepsTheLast64KiBAndAttachReplaysItBeforeLiveOutput) {
  auto output = ConsoleOutput::create({.to_stdout = false});
  ASSERT_TRUE(output);
  std::string older(ConsoleOutput::kReplayBytes, 'o');
  (*output)->write(bytes_of(older));
  (*output)->write(bytes_of("tail"));
  std::vector<uint8_t> replay = (*output)->replay();
  ASSERT_EQ(replay.size(), ConsoleOutput::kReplayBytes);
  EXPECT_EQ(std::string(replay.end() - 4, replay.end()), "tail");
  EXPECT_EQ(replay.front(), 'o');

  std::string seen;
  const uint64_t id = (*output)->attach(
      [&](std::span<const uint8_t> bytes) { seen.append(reinterpret_cast<const char*>(bytes.data()), bytes.size()); },
      /*replay=*/true);
  (*output)->write(bytes_of("live"));
  EXPECT_EQ(seen.size(), ConsoleOutput::kReplayBytes + 4);
  EXPECT_EQ(seen.substr(seen.size() - 8),
            "tail"
            "live");
  (*output)->detach(id);
  (*output)->write(bytes_of("after"));
  EXPECT_EQ(seen.substr(seen.size() - 4), "live");
}

TEST(ConsoleOutput, TheLogIsPrivateAndRotatesAtItsCap) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("hv-console-log-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string log = (dir / "console.log").string();
  {
    auto output = ConsoleOutput::create({.to_stdout = false, .log_path = log, .log_rotate_bytes = 100});
    ASSERT_TRUE(output) << output.error().message();
    (*output)->write(bytes_of(std::string(60, 'a')));
    (*output)->write(bytes_of(std::string(60, 'b')));  // 120 bytes: past the cap, not cut
    (*output)->write(bytes_of("cc"));                  // starts the new file
  }
  struct stat st {};
  ASSERT_EQ(::stat(log.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(std::filesystem::file_size(log), 2u);
  EXPECT_EQ(std::filesystem::file_size(log + ".1"), 120u);
  // A new run appends to what is there.
  {
    auto output = ConsoleOutput::create({.to_stdout = false, .log_path = log, .log_rotate_bytes = 100});
    ASSERT_TRUE(output);
    (*output)->write(bytes_of("dd"));
  }
  EXPECT_EQ(std::filesystem::file_size(log), 4u);
  std::filesystem::remove_all(dir);
}

TEST(ConsoleOutput, AnUnwritableLogIsAnError) {
  auto output = ConsoleOutput::create({.to_stdout = false, .log_path = "/nonexistent/dir/console.log"});
  ASSERT_FALSE(output);
  EXPECT_NE(output.error().message().find("--console-log"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor
