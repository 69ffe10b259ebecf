#include "block/disk_option.h"

#include "block/disk_serial.h"

namespace hostvisor::block {

namespace {

Result<bool> parse_switch(const std::string& key, const std::string& value) {
  if (value == "on" || value == "true" || value == "yes" || value == "1") return true;
  if (value == "off" || value == "false" || value == "no" || value == "0") return false;
  return Error(ErrorCode::kInvalidArgument, "--disk " + key + "=" + value + ": expected on or off");
}

}  // namespace

OpenOptions DiskOption::open_options() const {
  OpenOptions o;
  o.format = format;
  o.cache = cache;
  o.writable = !read_only;
  return o;
}

Result<DiskOption> parse_disk_option(const std::string& text) {
  DiskOption d;
  // Fields are comma-separated; a literal comma in the file name is written ",,".
  std::vector<std::string> fields;
  std::string cur;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ',') {
      if (fields.empty() && i + 1 < text.size() && text[i + 1] == ',') {
        cur += ',';
        ++i;
        continue;
      }
      fields.push_back(cur);
      cur.clear();
    } else {
      cur += text[i];
    }
  }
  fields.push_back(cur);
  d.path = fields[0];
  if (d.path.empty())
    return Error(ErrorCode::kInvalidArgument, "--disk: missing file name (--disk FILE[,key=value...])");
  for (size_t i = 1; i < fields.size(); ++i) {
    const std::string& f = fields[i];
    auto eq = f.find('=');
    if (eq == std::string::npos) {
      return Error(ErrorCode::kInvalidArgument, "--disk " + d.path + ": '" + f + "' is not key=value");
    }
    std::string key = f.substr(0, eq), value = f.substr(eq + 1);
    if (key == "format") {
      auto fmt = parse_image_format(value);
      if (!fmt.ok()) return fmt.error().with_context("--disk " + d.path);
      d.format = *fmt;
    } else if (key == "cache") {
      auto c = parse_cache_mode(value);
      if (!c.ok()) return c.error().with_context("--disk " + d.path);
      d.cache = *c;
    } else if (key == "readonly") {
      d.read_only = HV_TRY(parse_switch(key, value));
    } else if (key == "discard") {
      d.discard = HV_TRY(parse_switch(key, value));
    } else if (key == "serial") {
      HV_TRY(check_disk_serial(value));
      d.serial = value;
    } else {
      return Error(ErrorCode::kInvalidArgument, "--disk " + d.path + ": unknown option '" + key +
                                                    "' (use format, cache, readonly, discard or serial)");
    }
  }
  return d;
}

}  // namespace hostvisor::block
