// xterm.js, the page's terminal, from Debian's packages: never from the
// network. Debian 12's libjs-xterm (3.8.1+~cs0.9.0-1+deb12u1) ships
// /usr/share/javascript/xterm/xterm.js as a stub that still require()s the
// modules it should hold; so where that file is not a whole bundle, the
// modules node-xterm installs under /usr/share/nodejs/xterm/lib/ are
// wrapped into one script with a small CommonJS loader, which sets
// window.Terminal as the bundle would. A newer libjs-xterm whose file is
// whole is served as it is.
#pragma once

#include <mutex>
#include <optional>
#include <string>

#include "base/result.h"

namespace hostvisor::web {

struct StaticFile {
  std::string content_type;
  std::string body;
};

class XtermAssets {
 public:
  // share_root: /usr/share, or a stand-in in tests.
  explicit XtermAssets(std::string share_root) : share_root_(std::move(share_root)) {}

  // Read (and bundled) on first use and kept; a missing package is looked
  // for again at the next call, so installing it needs no daemon restart.
  // The error names the packages to install.
  Result<StaticFile> script();
  Result<StaticFile> style();

 private:
  Result<std::string> load_script() const;
  Error missing(const std::string& what) const;

  std::string share_root_;
  std::mutex mutex_;
  std::optional<StaticFile> script_;
};

}  // namespace hostvisor::web
