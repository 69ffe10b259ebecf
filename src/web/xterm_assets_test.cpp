#include "web/xterm_assets.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace hostvisor::web {
namespace {

namespace fs = std::filesystem;

class XtermAssetsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/hv-xterm-test.XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    root = templ;
  }
  void TearDown() override { fs::remove_all(root); }
  void write(const std::string& path, const std::string& text) {
    fs::create_directories((root / path).parent_path());
    std::ofstream(root / path) << text;
  }
  fs::path root;
};

// Debian 12's libjs-xterm: a stub that require()s what it should hold.
constexpr const char* kStub =
    "var Terminal_1 = require(\"./public/Terminal\");\nmodule.exports = Terminal_1.Terminal;\n";

TEST_F(XtermAssetsTest, BundlesNodeXtermsModulesWhereTheBrowserFileIsAStub) {
  write("javascript/xterm/xterm.js", kStub);
  write("javascript/xterm/xterm.css", ".xterm {}");
  write("nodejs/xterm/lib/public/Terminal.js", "var core = require(\"../Terminal\"); exports.Terminal = core.T;");
  write("nodejs/xterm/lib/Terminal.js", "exports.T = function () {};");
  write("nodejs/xterm/lib/Terminal.test.js", "require(\"chai\");");
  write("nodejs/xterm/lib/Terminal.js.map", "{}");
  XtermAssets assets(root.string());
  auto script = assets.script();
  ASSERT_TRUE(script) << script.error().message();
  EXPECT_EQ(script->content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(script->body.find("modules[\"public/Terminal\"] = function (require, module, exports) {"),
            std::string::npos);
  EXPECT_NE(script->body.find("modules[\"Terminal\"]"), std::string::npos);
  EXPECT_NE(script->body.find("exports.T = function () {};"), std::string::npos);
  EXPECT_EQ(script->body.find("chai"), std::string::npos);  // tests are left out
  EXPECT_EQ(script->body.find("Terminal.test"), std::string::npos);
  EXPECT_NE(script->body.find("window.Terminal = load(\"public/Terminal\").Terminal;"), std::string::npos);
  auto style = assets.style();
  ASSERT_TRUE(style);
  EXPECT_EQ(style->body, ".xterm {}");
}

TEST_F(XtermAssetsTest, ServesAWholeBundleAsItIs) {
  const std::string bundle = "!function(e,t){e.Terminal=t()}(self,function(){return function(){}});";
  write("javascript/xterm/xterm.js", bundle);
  XtermAssets assets(root.string());
  auto script = assets.script();
  ASSERT_TRUE(script);
  EXPECT_EQ(script->body, bundle);
}

TEST_F(XtermAssetsTest, SaysWhichPackagesAreMissingAndFindsThemOnceInstalled) {
  write("javascript/xterm/xterm.js", kStub);
  XtermAssets assets(root.string());
  auto script = assets.script();
  ASSERT_FALSE(script);
  EXPECT_NE(script.error().message().find("apt-get install libjs-xterm node-xterm"), std::string::npos);
  EXPECT_FALSE(assets.style());
  // Installed while the daemon runs: no restart needed.
  write("nodejs/xterm/lib/public/Terminal.js", "exports.Terminal = 1;");
  write("nodejs/xterm/lib/xterm.css", ".x {}");
  EXPECT_TRUE(assets.script());
  EXPECT_TRUE(assets.style());
}

}  // namespace
}  // namespace hostvisor::web
