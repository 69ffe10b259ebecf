// The web console's own page (src/web/page/: index.html, app.js, app.css),
// built into the binary so the daemon serves it with nothing installed
// beside it.
#pragma once

#include <span>
#include <string_view>

namespace hostvisor::web {

struct PageFile {
  std::string_view name;  // "index.html"
  std::string_view data;
};

std::span<const PageFile> page_files();

}  // namespace hostvisor::web
