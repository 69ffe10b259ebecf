#include "base/process.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

TEST(RunProcess, CollectsOutputAndStatus) {
  auto r = run_process({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_status, 3);
  EXPECT_NE(r->output.find("out"), std::string::npos);
  EXPECT_NE(r->output.find("err"), std::string::npos);
}

TEST(RunProcess, RunsInTheGivenDirectory) {
  auto r = run_process_checked({"pwd"}, "/tmp");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "/tmp\n");
}

TEST(RunProcess, CheckedFailureCarriesTheOutput) {
  auto r = run_process_checked({"sh", "-c", "echo nope; exit 1"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("nope"), std::string::npos);
  EXPECT_FALSE(run_process({"/nonexistent/program"}).ok());
}

}  // namespace
}  // namespace hostvisor
