// The --memory parser on arbitrary text: it never crashes, an error is one
// line naming the option, and what it accepts is a combination of backing
// options that can be built (hugetlbfs sizes in whole 2 MiB pages).
#include "cli/memory_option.h"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace hostvisor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto option = cli::parse_memory_option(text);
  if (!option.ok()) {
    const std::string& message = option.error().message();
    if (message.rfind("--memory ", 0) != 0) std::abort();
    return 0;
  }
  if (!choose_memory_kind(option->backing).ok()) std::abort();
  if (option->backing.huge_pages == HugePages::kHugetlb && option->size % kHugetlbPageSize != 0) std::abort();
  // What describe() prints parses back to the same options.
  const std::string described = describe(option->backing);
  auto again = cli::parse_memory_option("1G" + (described.empty() ? "" : "," + described));
  if (!again.ok() || !(again->backing == option->backing)) std::abort();
  return 0;
}
