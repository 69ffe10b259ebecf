#include "cli/memory_option.h"

#include <set>

#include "base/size.h"

namespace hostvisor::cli {

namespace {

Result<bool> on_off(const std::string& key, const std::string& value) {
  if (value == "on") return true;
  if (value == "off") return false;
  return Error(ErrorCode::kInvalidArgument, key + "=" + value + ": must be on or off");
}

Result<MemoryOption> parse(const std::string& text) {
  MemoryOption option;
  std::set<std::string> seen;
  size_t at = 0;
  bool first = true;
  while (true) {
    const size_t comma = text.find(',', at);
    const std::string field = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (first) {
      if (field.empty()) return Error(ErrorCode::kInvalidArgument, "the size comes first, e.g. 2G");
      option.size = HV_TRY(parse_size(field));
      first = false;
    } else {
      const size_t equals = field.find('=');
      if (field.empty() || equals == std::string::npos)
        return Error(ErrorCode::kInvalidArgument,
                     "'" + field + "' is not KEY=VALUE (hugepages, lock, prealloc, merge or shared)");
      const std::string key = field.substr(0, equals), value = field.substr(equals + 1);
      if (!seen.insert(key).second) return Error(ErrorCode::kInvalidArgument, key + " is given twice");
      if (key == "hugepages") {
        if (value == "on")
          option.backing.huge_pages = HugePages::kHugetlb;
        else if (value == "thp")
          option.backing.huge_pages = HugePages::kTransparent;
        else if (value == "off")
          option.backing.huge_pages = HugePages::kOff;
        else
          return Error(ErrorCode::kInvalidArgument, "hugepages=" + value + ": must be on, thp or off");
      } else if (key == "lock") {
        option.backing.lock = HV_TRY(on_off(key, value));
      } else if (key == "prealloc") {
        option.backing.prealloc = HV_TRY(on_off(key, value));
      } else if (key == "merge") {
        option.backing.merge = HV_TRY(on_off(key, value));
      } else if (key == "shared") {
        option.backing.shared = HV_TRY(on_off(key, value));
      } else {
        return Error(ErrorCode::kInvalidArgument,
                     "unknown key '" + key + "' (hugepages, lock, prealloc, merge or shared)");
      }
    }
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  HV_TRY(choose_memory_kind(option.backing));
  if (option.backing.huge_pages == HugePages::kHugetlb && option.size % kHugetlbPageSize != 0)
    return Error(ErrorCode::kInvalidArgument, "hugepages=on needs a size that is a multiple of 2 MiB");
  return option;
}

}  // namespace

Result<MemoryOption> parse_memory_option(const std::string& text) {
  auto option = parse(text);
  if (!option) return std::move(option).error().with_context("--memory " + text);
  return option;
}

}  // namespace hostvisor::cli
