#include "vmm/console.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

TEST(ConsoleEscape, PassesOrdinaryInputThrough) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("ls -l\r"), out), ConsoleEscape::Command::kNone);
  EXPECT_EQ(out, bytes("ls -l\r"));
}

TEST(ConsoleEscape, CtrlAXQuitsAndDropsTheRest) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("ab\x01xcd"), out), ConsoleEscape::Command::kQuit);
  EXPECT_EQ(out, bytes("ab"));
}

TEST(ConsoleEscape, EscapeSplitAcrossReads) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("a\x01"), out), ConsoleEscape::Command::kNone);
  EXPECT_EQ(escape.feed(bytes("x"), out), ConsoleEscape::Command::kQuit);
  EXPECT_EQ(out, bytes("a"));
}

TEST(ConsoleEscape, DoubleCtrlASendsOneAndHelpIsACommand) {
  ConsoleEscape escape;
  std::vector<uint8_t> out;
  EXPECT_EQ(escape.feed(bytes("\x01\x01z\x01h"), out), ConsoleEscape::Command::kHelp);
  EXPECT_EQ(out, bytes("\x01z"));
  EXPECT_NE(std::string(ConsoleEscape::help_text()).find("Ctrl-A x"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor
