#include "cli/fw_cfg_option.h"

#include <gtest/gtest.h>

namespace hostvisor::cli {
namespace {

TEST(FwCfgOption, TakesAFileOrAString) {
  auto file = parse_fw_cfg_option("name=opt/org.example/config,file=/tmp/x.json");
  ASSERT_TRUE(file.ok()) << file.error().message();
  EXPECT_EQ(file->name, "opt/org.example/config");
  EXPECT_EQ(file->host_path, "/tmp/x.json");
  auto text = parse_fw_cfg_option("string=hello world,name=opt/greeting");
  ASSERT_TRUE(text.ok()) << text.error().message();
  EXPECT_EQ(text->name, "opt/greeting");
  EXPECT_EQ(text->host_path, "");
  EXPECT_EQ(text->text, "hello world");
}

TEST(FwCfgOption, RefusesWhatFwCfgOrTheMachineCannotTake) {
  for (const char* bad :
       {"", "name=opt/x", "name=opt/x,file=a,string=b", "name=etc/e820,string=x", "name=opt/,string=x",
        "name=opt/x,string=a,string=b", "name=opt/x,color=red", "name=opt/x,file=", "opt/x", "string=x"}) {
    auto r = parse_fw_cfg_option(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) EXPECT_NE(r.error().message().find("--fw-cfg"), std::string::npos) << r.error().message();
  }
  EXPECT_FALSE(parse_fw_cfg_option("name=opt/" + std::string(52, 'x') + ",string=a").ok());
  EXPECT_TRUE(parse_fw_cfg_option("name=opt/" + std::string(51, 'x') + ",string=a").ok());
}

}  // namespace
}  // namespace hostvisor::cli
