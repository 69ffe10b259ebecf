#include "cli/device_options.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "block/disk_option.h"
#include "guest/default_guest/share_mounts.h"
#include "net/net_option.h"

namespace hostvisor::cli {

namespace {

constexpr size_t virtio_fs_tag_max = 36;  // virtio 1.2, 5.11.4: the tag field

struct WithoutTransport {
  std::string rest;  // the option without its transport= (and bootindex=) field
  VirtioTransport transport = VirtioTransport::kPci;
  std::optional<uint32_t> bootindex;
};

// bootindex=N: a boot position, 0 to 9999 (what QEMU's firmware paths allow
// in practice; a typo of a huge number is caught).
Result<uint32_t> parse_bootindex(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long value = std::strtoul(text.c_str(), &end, 10);
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])) || *end != '\0' || errno != 0 || value > 9999)
    return Error(ErrorCode::kInvalidArgument, "bootindex=" + text + ": expected a number from 0 to 9999");
  return static_cast<uint32_t>(value);
}

// Splits a comma-separated option into its fields. With
// `escaped_first_field`, a ",," in the first field is a literal comma (a
// file name) and stays as it is for the device's parser.
std::vector<std::string> split_fields(const std::string& text, bool escaped_first_field) {
  std::vector<std::string> fields;  // raw text of each field
  std::string field;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != ',') {
      field += text[i];
    } else if (escaped_first_field && fields.empty() && i + 1 < text.size() && text[i + 1] == ',') {
      field += ",,";
      ++i;
    } else {
      fields.push_back(field);
      field.clear();
    }
  }
  fields.push_back(field);
  return fields;
}

// Takes the transport=... field (and with `bootindex`, the bootindex=...
// one) out of a comma-separated option. With `escaped_first_field`, a ",,"
// in the first field is a literal comma (a --disk file name) and stays as
// it is for the device's parser.
Result<WithoutTransport> take_transport(const std::string& text, bool escaped_first_field, bool bootindex = false) {
  const std::vector<std::string> fields = split_fields(text, escaped_first_field);
  WithoutTransport out;
  std::optional<std::string> seen;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (bootindex && i > 0 && fields[i].rfind("bootindex=", 0) == 0) {
      if (out.bootindex) return Error(ErrorCode::kInvalidArgument, "bootindex= is given twice; give it once");
      out.bootindex = HV_TRY(parse_bootindex(fields[i].substr(sizeof("bootindex=") - 1)));
      continue;
    }
    if (i > 0 && fields[i].rfind("transport=", 0) == 0) {
      if (seen) return Error(ErrorCode::kInvalidArgument, "transport= is given twice; give it once (pci or mmio)");
      seen = fields[i].substr(sizeof("transport=") - 1);
      out.transport = HV_TRY(parse_virtio_transport(*seen));
      continue;
    }
    if (i > 0) out.rest += ',';  // the first field is always kept
    out.rest += fields[i];
  }
  return out;
}

}  // namespace

Result<VirtioTransport> parse_virtio_transport(const std::string& text) {
  if (text == "pci") return VirtioTransport::kPci;
  if (text == "mmio") return VirtioTransport::kMmio;
  return Error(ErrorCode::kInvalidArgument,
               "transport=" + text + ": expected pci (a PCI function, the default) or mmio (a virtio-mmio device)");
}

Result<DiskConfig> parse_disk_config(const std::string& text) {
  // Errors name the key only: the caller says which --disk they are about,
  // as it does for the disk parser's own errors.
  const WithoutTransport split = HV_TRY(take_transport(text, /*escaped_first_field=*/true, /*bootindex=*/true));
  auto disk = block::parse_disk_option(split.rest);
  if (!disk) return std::move(disk).error();
  if (split.bootindex && split.transport != VirtioTransport::kPci)
    return Error(ErrorCode::kInvalidArgument,
                 "bootindex= needs transport=pci: the firmware boots only disks it finds on PCI");
  return DiskConfig{*disk, split.transport, split.bootindex};
}

Result<CdromConfig> parse_cdrom_config(const std::string& text) {
  const std::vector<std::string> fields = split_fields(text, /*escaped_first_field=*/true);
  CdromConfig out;
  for (size_t i = 0; i < fields[0].size(); ++i) {
    out.path += fields[0][i];
    if (fields[0][i] == ',') ++i;  // ",," is one literal comma
  }
  if (out.path.empty())
    return Error(ErrorCode::kInvalidArgument, "no image given: --cdrom ISO[,bus=scsi|ahci][,bootindex=N]");
  bool bus_seen = false;
  for (size_t i = 1; i < fields.size(); ++i) {
    const std::string& field = fields[i];
    if (field.rfind("bus=", 0) == 0) {
      if (std::exchange(bus_seen, true)) return Error(ErrorCode::kInvalidArgument, "bus= is given twice; give it once");
      const std::string bus = field.substr(4);
      if (bus == "scsi") {
        out.bus = CdromBus::kScsi;
      } else if (bus == "ahci") {
        out.bus = CdromBus::kAhci;
      } else {
        return Error(ErrorCode::kInvalidArgument,
                     "bus=" + bus + ": expected scsi (virtio-scsi, the default) or ahci (an AHCI controller's port)");
      }
    } else if (field.rfind("bootindex=", 0) == 0) {
      if (out.bootindex) return Error(ErrorCode::kInvalidArgument, "bootindex= is given twice; give it once");
      out.bootindex = HV_TRY(parse_bootindex(field.substr(sizeof("bootindex=") - 1)));
    } else {
      return Error(ErrorCode::kInvalidArgument, "'" + field + "': expected bus=scsi|ahci or bootindex=N");
    }
  }
  std::error_code error;
  if (!std::filesystem::is_regular_file(out.path, error))
    return Error(ErrorCode::kNotFound, out.path + ": no such image file");
  return out;
}

Result<NetConfig> parse_net_config(const std::string& text) {
  // The net parser's errors name the option themselves; these do too.
  auto split = take_transport(text, /*escaped_first_field=*/false);
  if (!split) return std::move(split).error().with_context("--net " + text);
  auto net = net::parse_net_option(split->rest);
  if (!net) return std::move(net).error();
  return NetConfig{*net, split->transport, split->rest};
}

std::string run_vm_identity(const std::string& kernel_path, const std::vector<DiskConfig>& disks) {
  // Absolute, not canonical: a path that does not exist (yet) still names
  // the same VM, and a symlink the user switches over is a different VM.
  auto absolute = [](const std::string& path) {
    std::error_code ec;
    const std::filesystem::path p = std::filesystem::absolute(path, ec);
    return ec ? path : p.lexically_normal().string();
  };
  // NUL separates the parts: it cannot occur in a path.
  std::string identity = "hostvisor run";
  identity += '\0';
  identity += "kernel=" + absolute(kernel_path);
  for (const auto& disk : disks) {
    identity += '\0';
    identity += "disk=" + absolute(disk.disk.path);
  }
  return identity;
}

void assign_stable_macs(const std::string& vm_identity, std::vector<NetConfig>& nets) {
  size_t nic_index = 0;
  for (auto& config : nets) {
    std::visit(
        [&](auto& mode) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(mode)>, net::NoNetOption>) {
            std::string seed = vm_identity;
            seed += '\0';
            seed += "nic=" + std::to_string(nic_index++);
            if (!mode.mac) mode.mac = net::derived_mac_address(seed);
          }
        },
        config.net);
  }
}

Result<void> apply_restore_net_options(std::vector<NetConfig>& saved, const std::vector<std::string>& given) {
  if (given.size() != saved.size())
    return Error(ErrorCode::kInvalidArgument, "--net with --restore: the snapshot has " + std::to_string(saved.size()) +
                                                  " NIC(s); give one --net for each");
  std::vector<NetConfig> replaced = saved;
  for (size_t i = 0; i < given.size(); ++i) {
    const std::string where = "--net " + given[i] + " with --restore: NIC " + std::to_string(i);
    NetConfig next = HV_TRY(parse_net_config(given[i]));
    const auto* old_nat = std::get_if<net::UserNetOption>(&saved[i].net);
    auto* new_nat = std::get_if<net::UserNetOption>(&next.net);
    if (!old_nat || !new_nat)
      return Error(ErrorCode::kInvalidArgument,
                   where + ": only a user-mode NAT's hostfwd= and rate= can change at a restore");
    if (next.transport != saved[i].transport || new_nat->network != old_nat->network ||
        new_nat->ipv6 != old_nat->ipv6 || new_nat->restrict != old_nat->restrict ||
        (new_nat->mac && new_nat->mac != old_nat->mac))
      return Error(ErrorCode::kInvalidArgument, where + " differs from the snapshot's (" + saved[i].text +
                                                    ") in more than hostfwd= and rate=, which the guest would see");
    new_nat->mac = old_nat->mac;
    replaced[i] = std::move(next);
  }
  saved = std::move(replaced);
  return ok();
}

Result<VsockConfig> parse_vsock_config(const std::string& text) {
  auto split = take_transport(text, /*escaped_first_field=*/false);
  if (!split) return std::move(split).error().with_context("--vsock " + text);
  VsockConfig config;
  config.transport = split->transport;
  bool cid_given = false;
  std::string rest = split->rest;
  for (size_t start = 0; start <= rest.size();) {
    size_t end = rest.find(',', start);
    if (end == std::string::npos) end = rest.size();
    const std::string field = rest.substr(start, end - start);
    start = end + 1;
    if (field.rfind("cid=", 0) == 0) {
      const std::string value = field.substr(4);
      char* tail = nullptr;
      errno = 0;
      const unsigned long long cid = value.empty() ? 0 : std::strtoull(value.c_str(), &tail, 10);
      if (value.empty() || *tail != '\0' || errno != 0 || value[0] == '-' || cid < 3 || cid > 0xfffffffeull)
        return Error(ErrorCode::kInvalidArgument,
                     "--vsock cid=" + value + ": the guest's CID is a number from 3 to 4294967294 (0-2 are reserved)");
      config.guest_cid = cid;
      cid_given = true;
    } else if (field.rfind("uds=", 0) == 0) {
      config.uds_path = field.substr(4);
      if (config.uds_path.empty()) return Error(ErrorCode::kInvalidArgument, "--vsock uds=: give the socket's path");
    } else {
      return Error(ErrorCode::kInvalidArgument,
                   "--vsock " + text + ": unknown field '" + field + "'; expected cid=N,uds=PATH[,transport=pci|mmio]");
    }
  }
  if (!cid_given || config.uds_path.empty())
    return Error(ErrorCode::kInvalidArgument, "--vsock " + text + ": expected cid=N,uds=PATH[,transport=pci|mmio]");
  return config;
}

Result<ShareConfig> parse_share_config(const std::string& text) {
  auto split = take_transport(text, /*escaped_first_field=*/true);
  if (!split) return std::move(split).error().with_context("--share " + text);
  const std::string usage =
      "expected HOSTDIR,tag=TAG[,readonly=on][,cache=auto|always|never][,mount=GUESTPATH][,transport=pci|mmio]";
  ShareConfig config;
  config.transport = split->transport;
  // The directory first (",," a literal comma), then key=value fields.
  const std::string& rest = split->rest;
  size_t i = 0;
  for (; i < rest.size(); ++i) {
    if (rest[i] != ',') {
      config.host_dir += rest[i];
    } else if (i + 1 < rest.size() && rest[i + 1] == ',') {
      config.host_dir += ',';
      ++i;
    } else {
      break;
    }
  }
  if (config.host_dir.empty()) return Error(ErrorCode::kInvalidArgument, "--share " + text + ": " + usage);
  std::error_code ec;
  if (!std::filesystem::is_directory(config.host_dir, ec))
    return Error(ErrorCode::kInvalidArgument, "--share " + config.host_dir + ": not an existing directory");
  config.host_dir = std::filesystem::absolute(config.host_dir, ec).lexically_normal().string();
  if (config.host_dir.size() > 1 && config.host_dir.back() == '/') config.host_dir.pop_back();
  bool tag_given = false;
  for (size_t start = i + 1; i < rest.size() && start <= rest.size();) {
    size_t end = rest.find(',', start);
    if (end == std::string::npos) end = rest.size();
    const std::string field = rest.substr(start, end - start);
    start = end + 1;
    const auto on_off = [&](const std::string& value, const std::string& key) -> Result<bool> {
      if (value == "on") return true;
      if (value == "off") return false;
      return Error(ErrorCode::kInvalidArgument, "--share " + key + "=" + value + ": expected on or off");
    };
    if (field.rfind("tag=", 0) == 0) {
      config.tag = field.substr(4);
      if (config.tag.empty() || config.tag.size() > virtio_fs_tag_max ||
          config.tag.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") !=
              std::string::npos)
        return Error(ErrorCode::kInvalidArgument,
                     "--share tag=" + config.tag + ": a tag is 1 to 36 characters of A-Z a-z 0-9 _ . -");
      tag_given = true;
    } else if (field.rfind("readonly=", 0) == 0) {
      config.read_only = HV_TRY(on_off(field.substr(9), "readonly"));
    } else if (field.rfind("cache=", 0) == 0) {
      const std::string value = field.substr(6);
      if (value == "auto") {
        config.cache = ShareCache::kAuto;
      } else if (value == "always") {
        config.cache = ShareCache::kAlways;
      } else if (value == "never") {
        config.cache = ShareCache::kNever;
      } else {
        return Error(ErrorCode::kInvalidArgument, "--share cache=" + value + ": expected auto, always or never");
      }
    } else if (field.rfind("mount=", 0) == 0) {
      config.guest_mount = field.substr(6);
      if (auto checked = guest::check_guest_mount_path(config.guest_mount); !checked)
        return checked.error().with_context("--share");
    } else {
      return Error(ErrorCode::kInvalidArgument, "--share " + text + ": unknown field '" + field + "'; " + usage);
    }
  }
  if (!tag_given) return Error(ErrorCode::kInvalidArgument, "--share " + text + ": no tag= given; " + usage);
  return config;
}

std::string share_cmdline_parameter(const std::vector<ShareConfig>& shares) {
  std::vector<guest::ShareMount> mounts;
  for (const auto& share : shares) mounts.push_back({share.tag, share.guest_mount});
  return guest::share_mounts_cmdline_parameter(mounts);
}

Result<ConsoleDevice> parse_console_device(const std::string& text) {
  if (text == "serial") return ConsoleDevice::kSerial;
  if (text == "virtio") return ConsoleDevice::kVirtio;
  return Error(ErrorCode::kInvalidArgument,
               "--console " + text + ": expected serial (the 16550 UART, ttyS0) or virtio (the virtio console, hvc0)");
}

}  // namespace hostvisor::cli
