#include "daemon/vm_config.h"

#include <filesystem>
#include <set>

#include "base/size.h"
#include "block/disk_serial.h"
#include "daemon/names.h"
#include "guest/default_guest/share_mounts.h"

namespace hostvisor::daemon {

using nlohmann::json;

namespace {
constexpr uint32_t kMaxCpus = 64;
constexpr uint64_t kMaxDataDisk = uint64_t{16} << 40;  // 16 TiB

Error field_error(const std::string& field, const std::string& what) {
  return Error(ErrorCode::kInvalidArgument, "field '" + field + "': " + what);
}

Result<std::string> string_field(const json& object, const char* field) {
  const json& value = object.at(field);
  if (!value.is_string()) return field_error(field, "must be a string");
  const std::string& text = value.get_ref<const std::string&>();
  if (text.size() > 4096) return field_error(field, "is longer than 4096 characters");
  if (text.find('\0') != std::string::npos) return field_error(field, "holds a NUL character");
  return text;
}

// A path a VM process opens; relative ones are under the VM's directory and
// must not climb out of it.
Result<std::string> path_field(const json& object, const char* field) {
  std::string path = HV_TRY(string_field(object, field));
  if (path.empty()) return path;
  if (path[0] != '/') {
    if (path == ".." || path.starts_with("../") || path.find("/../") != std::string::npos || path.ends_with("/.."))
      return field_error(field, "a relative path may not leave the VM's directory");
  }
  if (path.find(',') != std::string::npos) return field_error(field, "a path with ',' cannot be passed on");
  return path;
}

// The checks `hostvisor run --share` makes, made here too so a bad share is
// refused when it is configured rather than when the VM starts.
Result<std::vector<VmShare>> parse_shares(const json& shares) {
  constexpr size_t kMaxShares = 16;
  if (!shares.is_array() || shares.size() > kMaxShares)
    return field_error("shares", "must be a list of at most 16 shares");
  std::vector<VmShare> parsed;
  std::set<std::string> tags;
  // A share without a tag gets the first "shareN" no other share names.
  std::set<std::string> given;
  for (const json& share : shares)
    if (share.is_object() && share.contains("tag") && share.at("tag").is_string())
      given.insert(share.at("tag").get<std::string>());
  size_t next_default = 0;
  const auto default_tag = [&] {
    while (given.count("share" + std::to_string(next_default))) ++next_default;
    return "share" + std::to_string(next_default++);
  };
  for (const json& share : shares) {
    if (!share.is_object() || !share.contains("path"))
      return field_error("shares", "each share is an object with a \"path\" (and optional \"tag\", \"readonly\", "
                                   "\"mount\")");
    VmShare s;
    s.host_path = HV_TRY(string_field(share, "path"));
    std::error_code ec;
    if (s.host_path.empty() || s.host_path[0] != '/' || !std::filesystem::is_directory(s.host_path, ec))
      return field_error("shares", "'" + s.host_path + "' is not an absolute path of an existing directory");
    s.tag = share.contains("tag") ? HV_TRY(string_field(share, "tag")) : default_tag();
    if (s.tag.empty() || s.tag.size() > 36 ||
        s.tag.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") !=
            std::string::npos)
      return field_error("shares", "tag '" + s.tag + "' is not 1 to 36 characters of A-Z a-z 0-9 _ . -");
    if (!tags.insert(s.tag).second)
      return field_error("shares", "two shares have the tag '" + s.tag + "'; give each its own");
    if (share.contains("readonly")) {
      if (!share.at("readonly").is_boolean()) return field_error("shares", "readonly must be true or false");
      s.readonly = share.at("readonly").get<bool>();
    }
    if (share.contains("mount")) {
      s.mount = HV_TRY(string_field(share, "mount"));  // "": /mnt/TAG
      if (auto checked = guest::check_guest_mount_path(s.mount); !s.mount.empty() && !checked)
        return field_error("shares", checked.error().message());
    }
    parsed.push_back(std::move(s));
  }
  return parsed;
}

Result<void> apply_field(VmConfig& config, const std::string& key, const json& update) {
  if (key == "memory") {
    config.memory = HV_TRY(string_field(update, "memory"));
    auto size = parse_size(config.memory.substr(0, config.memory.find(',')));
    if (!size || *size < (uint64_t{16} << 20))
      return field_error("memory", "'" + config.memory + "' is not a size of at least 16M (e.g. 512M, 2G)");
  } else if (key == "cpus") {
    const json& value = update.at("cpus");
    if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > kMaxCpus)
      return field_error("cpus", "must be a whole number from 1 to " + std::to_string(kMaxCpus));
    config.cpus = value.get<uint32_t>();
  } else if (key == "accel") {
    config.accel = HV_TRY(string_field(update, "accel"));
    if (config.accel != "auto" && config.accel != "kvm" && config.accel != "emu")
      return field_error("accel", "must be auto, kvm or emu");
  } else if (key == "console") {
    config.console = HV_TRY(string_field(update, "console"));
    if (config.console != "serial" && config.console != "virtio") return field_error("console", "must be serial or virtio");
  } else if (key == "kernel") {
    config.kernel = HV_TRY(path_field(update, "kernel"));
  } else if (key == "initrd") {
    config.initrd = HV_TRY(path_field(update, "initrd"));
  } else if (key == "append") {
    config.append = HV_TRY(string_field(update, "append"));
  } else if (key == "balloon") {
    if (!update.at("balloon").is_boolean()) return field_error("balloon", "must be true or false");
    config.balloon = update.at("balloon").get<bool>();
  } else if (key == "nets") {
    const json& nets = update.at("nets");
    if (!nets.is_array() || nets.size() > 8) return field_error("nets", "must be a list of at most 8 --net values");
    std::vector<std::string> parsed;
    for (const json& net : nets) {
      if (!net.is_string() || net.get_ref<const std::string&>().empty() || net.get_ref<const std::string&>().size() > 1024)
        return field_error("nets", "each entry is a --net value such as \"user\" or \"internal,name=lab\"");
      parsed.push_back(net.get<std::string>());
    }
    config.nets = std::move(parsed);
  } else if (key == "disks") {
    const json& disks = update.at("disks");
    if (!disks.is_array() || disks.size() > 16) return field_error("disks", "must be a list of at most 16 disks");
    std::vector<VmDisk> parsed;
    for (const json& disk : disks) {
      if (!disk.is_object() || !disk.contains("path"))
        return field_error("disks", "each disk is an object with a \"path\" (and optional \"format\", \"readonly\")");
      VmDisk d;
      auto path = path_field(disk, "path");
      if (!path) return path.error().with_context("field 'disks'");
      d.path = std::move(path.value());
      if (d.path.empty()) return field_error("disks", "a disk's path is empty");
      if (disk.contains("format")) {
        d.format = HV_TRY(string_field(disk, "format"));
        if (!d.format.empty() && d.format != "raw" && d.format != "qcow2")
          return field_error("disks", "format must be raw or qcow2");
      }
      if (disk.contains("readonly")) {
        if (!disk.at("readonly").is_boolean()) return field_error("disks", "readonly must be true or false");
        d.readonly = disk.at("readonly").get<bool>();
      }
      if (disk.contains("serial")) {
        d.serial = HV_TRY(string_field(disk, "serial"));
        if (auto checked = block::check_disk_serial(d.serial); !d.serial.empty() && !checked)
          return checked.error().with_context("field 'disks'");
      }
      parsed.push_back(std::move(d));
    }
    config.disks = std::move(parsed);
  } else if (key == "shares") {
    config.shares = HV_TRY(parse_shares(update.at("shares")));
  } else if (key == "data_disk_bytes") {
    const json& value = update.at("data_disk_bytes");
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<uint64_t>() > kMaxDataDisk)
      return field_error("data_disk_bytes", "must be a byte count up to 16 TiB (0: no data disk)");
    config.data_disk_bytes = value.get<uint64_t>();
  } else {
    return field_error(key, "is not a VM setting (memory, cpus, accel, console, kernel, initrd, append, balloon, "
                            "nets, disks, shares, data_disk_bytes)");
  }
  return ok();
}
}  // namespace

Result<void> apply_vm_update(VmConfig& config, const json& update) {
  if (!update.is_object()) return Error(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  VmConfig changed = config;
  for (const auto& [key, value] : update.items()) {
    if (key == "name") {
      if (!value.is_string() || value.get_ref<const std::string&>() != config.name)
        return field_error("name", "a VM cannot be renamed; clone it instead");
      continue;
    }
    HV_TRY(apply_field(changed, key, update));
  }
  if (changed.kernel.empty() && (!changed.initrd.empty() || !changed.append.empty()))
    return field_error("initrd", "initrd and append go with a kernel");
  config = std::move(changed);
  return ok();
}

Result<VmConfig> vm_config_from_json(const json& json) {
  if (!json.is_object()) return Error(ErrorCode::kInvalidArgument, "the body must be a JSON object");
  if (!json.contains("name")) return field_error("name", "is required");
  VmConfig config;
  config.name = HV_TRY(string_field(json, "name"));
  HV_TRY(check_name(config.name, "VM name"));
  nlohmann::json rest = json;
  rest.erase("name");
  rest.erase("created");
  HV_TRY(apply_vm_update(config, rest));
  if (!json.contains("data_disk_bytes") && config.default_guest()) config.data_disk_bytes = uint64_t{8} << 30;
  if (json.contains("created") && json.at("created").is_string()) config.created = json.at("created").get<std::string>();
  return config;
}

json vm_config_to_json(const VmConfig& config) {
  json disks = json::array();
  for (const VmDisk& disk : config.disks)
    disks.push_back(
        {{"path", disk.path}, {"format", disk.format}, {"readonly", disk.readonly}, {"serial", disk.serial}});
  json shares = json::array();
  for (const VmShare& share : config.shares)
    shares.push_back(
        {{"path", share.host_path}, {"tag", share.tag}, {"readonly", share.readonly}, {"mount", share.mount}});
  return {{"name", config.name},       {"memory", config.memory},   {"cpus", config.cpus},
          {"accel", config.accel},     {"console", config.console}, {"kernel", config.kernel},
          {"initrd", config.initrd},   {"append", config.append},   {"disks", disks},
          {"shares", shares},          {"nets", config.nets},       {"balloon", config.balloon}, {"data_disk_bytes", config.data_disk_bytes},
          {"created", config.created}};
}

namespace {
// The index in config.nets of the nic-th NIC, or nets.size().
size_t net_index(const VmConfig& config, uint32_t nic) {
  uint32_t seen = 0;
  for (size_t i = 0; i < config.nets.size(); ++i) {
    if (config.nets[i] == "none") continue;
    if (seen++ == nic) return i;
  }
  return config.nets.size();
}
}  // namespace

Result<void> add_net_forward(VmConfig& config, uint32_t nic, const std::string& forward) {
  const size_t index = net_index(config, nic);
  if (index == config.nets.size())
    return Error(ErrorCode::kNotFound, "VM " + config.name + " has no NIC " + std::to_string(nic));
  config.nets[index] += ",hostfwd=" + forward;
  return ok();
}

bool remove_net_forward(VmConfig& config, uint32_t nic, const std::string& proto, const std::string& host_addr,
                        uint16_t host_port) {
  const size_t index = net_index(config, nic);
  if (index == config.nets.size()) return false;
  // The --net value's fields, kept but for the one forward of that host port.
  const std::string& net = config.nets[index];
  std::string kept;
  bool removed = false;
  for (size_t start = 0; start <= net.size();) {
    size_t end = net.find(',', start);
    if (end == std::string::npos) end = net.size();
    const std::string field = net.substr(start, end - start);
    start = end + 1;
    if (!removed && field.starts_with("hostfwd=")) {
      // PROTO:[HOSTADDR]:HOSTPORT-...
      const std::string value = field.substr(8);
      const size_t colon = value.find(':'), dash = value.find('-');
      const size_t port_colon = value.rfind(':', dash);
      if (colon != std::string::npos && dash != std::string::npos && port_colon != std::string::npos &&
          port_colon > colon) {
        std::string addr = value.substr(colon + 1, port_colon - colon - 1);
        if (addr.empty()) addr = "127.0.0.1";
        if (value.substr(0, colon) == proto && addr == host_addr &&
            value.substr(port_colon + 1, dash - port_colon - 1) == std::to_string(host_port)) {
          removed = true;
          continue;
        }
      }
    }
    kept += (kept.empty() ? "" : ",") + field;
  }
  if (removed) config.nets[index] = kept.empty() ? "user" : kept;
  return removed;
}

std::vector<std::string> boot_arguments(const VmConfig& config, const std::string& vm_dir) {
  std::vector<std::string> args;
  if (!config.kernel.empty()) {
    args.insert(args.end(), {"--kernel", config.kernel});
    if (!config.initrd.empty()) args.insert(args.end(), {"--initrd", config.initrd});
    if (!config.append.empty()) args.insert(args.end(), {"--append", config.append});
  }
  args.insert(args.end(), {"--memory", config.memory, "--cpus", std::to_string(config.cpus), "--console",
                           config.console});
  for (const VmDisk& disk : config.disks) {
    std::string value = disk.path[0] == '/' ? disk.path : vm_dir + "/" + disk.path;
    if (!disk.format.empty()) value += ",format=" + disk.format;
    if (disk.readonly) value += ",readonly=on";
    if (!disk.serial.empty()) value += ",serial=" + disk.serial;
    args.insert(args.end(), {"--disk", value});
  }
  for (const VmShare& share : config.shares) {
    // ",," is a literal comma in --share's directory.
    std::string value;
    for (char c : share.host_path) value += c == ',' ? std::string(",,") : std::string(1, c);
    value += ",tag=" + share.tag;
    if (share.readonly) value += ",readonly=on";
    if (!share.mount.empty()) value += ",mount=" + share.mount;
    args.insert(args.end(), {"--share", value});
  }
  if (config.nets.empty()) args.insert(args.end(), {"--net", "none"});
  for (const std::string& net : config.nets) args.insert(args.end(), {"--net", net});
  // The default guest has a balloon unless told otherwise; another guest only when asked.
  if (!config.balloon && config.default_guest()) args.emplace_back("--balloon=off");
  if (config.balloon && !config.default_guest()) args.emplace_back("--balloon");
  return args;
}

}  // namespace hostvisor::daemon
