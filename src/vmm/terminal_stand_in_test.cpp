#include "vmm/terminal_stand_in.h"

#include <gtest/gtest.h>

#include <string_view>

namespace hostvisor {
namespace {

std::span<const uint8_t> bytes(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

std::string scan(CursorPositionReports& reports, std::string_view output) {
  std::string answers;
  reports.scan(bytes(output), answers);
  return answers;
}

// busybox ash after a prompt: the cursor sits after "/ # " on its line,
// on the bottom row of the screen.
TEST(CursorPositionReports, AnswersTheQueryWithTheCursorAfterThePrompt) {
  CursorPositionReports reports;
  EXPECT_EQ(scan(reports, "boot line\r\n/ # \x1b[6n"), "\x1b[24;5R");
  EXPECT_EQ(scan(reports, "ls\r\nbin  etc\r\n/ # \x1b[6n"), "\x1b[24;5R");
}

// A restored clone's first output can be its prompt (the snapshot was taken
// while a command ran). Answered "ESC [ 1 ; 5 R", busybox read it as the
// start of Ctrl-Right and swallowed the keys typed after it; every answer
// be on a row other than the first, whatever the column.
TEST(CursorPositionReports, ARunWhoseFirstOutputIsThePromptIsAnsweredOnTheBottomRow) {
  CursorPositionReports reports;
  EXPECT_EQ(scan(reports, "/ # \x1b[6n"), "\x1b[24;5R");
  for (unsigned column = 1; column <= CursorPositionReports::kColumns; ++column) {
    CursorPositionReports fresh;
    const std::string answer = scan(fresh, std::string(column - 1, 'x') + "\x1b[6n");
    EXPECT_EQ(answer, "\x1b[24;" + std::to_string(column) + "R");
  }
}

TEST(CursorPositionReports, AQuerySplitAcrossWritesIsAnsweredOnce) {
  CursorPositionReports reports;
  EXPECT_EQ(scan(reports, "ab\x1b"), "");
  EXPECT_EQ(scan(reports, "[6"), "");
  EXPECT_EQ(scan(reports, "n"), "\x1b[24;3R");
}

TEST(CursorPositionReports, OtherSequencesAreNotAnsweredAndTakeNoColumns) {
  CursorPositionReports reports;
  // Colours, a device-attributes query, a status query other than 6.
  EXPECT_EQ(scan(reports, "\x1b[1;32mok\x1b[0m\x1b[c\x1b[5n\x1b[16n"), "");
  EXPECT_EQ(scan(reports, "\x1b[6n"), "\x1b[24;3R");
}

TEST(CursorPositionReports, FollowsBackspaceTabUtf8AndWrapsAt80Columns) {
  CursorPositionReports reports;
  EXPECT_EQ(scan(reports, "abc\b\x1b[6n"), "\x1b[24;3R");
  EXPECT_EQ(scan(reports, "\r\t\x1b[6n"), "\x1b[24;9R");
  EXPECT_EQ(scan(reports, "\r\xc3\xa9t\xc3\xa9\x1b[6n"), "\x1b[24;4R");  // "été": three columns
  EXPECT_EQ(scan(reports, "\r" + std::string(81, 'x') + "\x1b[6n"), "\x1b[24;2R");
  // A line feed alone keeps the column, as on a terminal.
  EXPECT_EQ(scan(reports, "\r/ # \n\x1b[6n"), "\x1b[24;5R");
}

// Through the stand-in: its fd says when answers wait, and a guest that
// floods queries nobody takes cannot grow them without bound.
TEST(TerminalStandIn, SignalsAnswersAndBoundsThem) {
  auto stand_in = TerminalStandIn::create();
  ASSERT_TRUE(stand_in.ok());
  (*stand_in)->observe(bytes("/ # "));
  EXPECT_EQ((*stand_in)->take_answers(), "");
  (*stand_in)->observe(bytes("\x1b[6n"));
  EXPECT_EQ((*stand_in)->take_answers(), "\x1b[24;5R");
  std::string flood;
  for (int i = 0; i < 10000; ++i) flood += "\x1b[6n";
  (*stand_in)->observe(bytes(flood));
  const std::string answers = (*stand_in)->take_answers();
  EXPECT_LE(answers.size(), 4096u);
  EXPECT_GT(answers.size(), 0u);
}

}  // namespace
}  // namespace hostvisor
