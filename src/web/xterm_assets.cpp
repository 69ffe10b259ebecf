#include "web/xterm_assets.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <vector>

#include "base/fd.h"

namespace hostvisor::web {

namespace fs = std::filesystem;

namespace {

// A bundle that still loads its parts by relative require() is the stub.
bool is_whole_bundle(const std::string& script) {
  return script.find("require(\"./") == std::string::npos && script.find("require('./") == std::string::npos;
}

// Each module becomes function(require, module, exports) in a table keyed
// by its path under lib/ without ".js"; require() resolves a relative name
// against the requiring module's folder, as Node does.
constexpr const char* kLoaderHead = R"(/* xterm.js from Debian's node-xterm, bundled by hostvisor's daemon */
(function () {
"use strict";
var modules = {};
)";
constexpr const char* kLoaderTail = R"(
var cache = {};
function resolve(from, request) {
  var parts = from.split("/");
  parts.pop();
  request.split("/").forEach(function (part) {
    if (part === "..") parts.pop();
    else if (part !== "." && part !== "") parts.push(part);
  });
  return parts.join("/").replace(/\.js$/, "");
}
function load(id) {
  if (cache[id]) return cache[id].exports;
  var define = modules[id];
  if (!define) throw new Error("xterm.js bundle: no module " + id);
  var module = { exports: {} };
  cache[id] = module;
  define(function (request) { return load(resolve(id, request)); }, module, module.exports);
  return module.exports;
}
window.Terminal = load("public/Terminal").Terminal;
})();
)";

}  // namespace

Error XtermAssets::missing(const std::string& what) const {
  return Error(ErrorCode::kNotFound, what +
                                         ": the web console's terminal is xterm.js from Debian's packages; install "
                                         "them with `apt-get install libjs-xterm node-xterm`");
}

Result<std::string> XtermAssets::load_script() const {
  if (auto packaged = read_file(share_root_ + "/javascript/xterm/xterm.js"); packaged && is_whole_bundle(*packaged))
    return std::move(*packaged);
  const fs::path lib = share_root_ + "/nodejs/xterm/lib";
  std::error_code ec;
  if (!fs::is_regular_file(lib / "public/Terminal.js", ec))
    return missing("no whole " + share_root_ + "/javascript/xterm/xterm.js and no " +
                   (lib / "public/Terminal.js").string());
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(lib, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->is_regular_file() && name.ends_with(".js") && !name.ends_with(".test.js")) files.push_back(it->path());
  }
  if (ec) return Error(ErrorCode::kIo, "reading " + lib.string() + ": " + ec.message());
  std::sort(files.begin(), files.end());  // the same bundle every time
  std::string bundle = kLoaderHead;
  for (const fs::path& file : files) {
    std::string id = file.lexically_relative(lib).string();
    id.resize(id.size() - 3);
    // The id goes into a string literal as it is: only names of letters,
    // digits, '/', '.', '_' and '-' (all of xterm's) are taken.
    if (!std::all_of(id.begin(), id.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '_' || c == '-';
        }))
      continue;
    const std::string source = HV_TRY(read_file(file.string()));
    bundle += "modules[\"" + id + "\"] = function (require, module, exports) {\n" + source + "\n};\n";
  }
  bundle += kLoaderTail;
  return bundle;
}

Result<StaticFile> XtermAssets::script() {
  std::lock_guard lock(mutex_);
  if (!script_) script_ = StaticFile{"text/javascript; charset=utf-8", HV_TRY(load_script())};
  return *script_;
}

Result<StaticFile> XtermAssets::style() {
  for (const char* path : {"/javascript/xterm/xterm.css", "/nodejs/xterm/lib/xterm.css"})
    if (auto css = read_file(share_root_ + path)) return StaticFile{"text/css; charset=utf-8", std::move(*css)};
  return missing("no " + share_root_ + "/javascript/xterm/xterm.css");
}

}  // namespace hostvisor::web
