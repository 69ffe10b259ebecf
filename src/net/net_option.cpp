#include "net/net_option.h"

#include "base/size.h"
#include "net/switch/switch_paths.h"

namespace hostvisor::net {

namespace {
constexpr const char* kUserForm =
    "user[,hostfwd=PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...[,net=CIDR][,ipv6=on|off][,restrict=on|off]"
    "[,mac=52:54:00:12:34:56][,rate=BYTES]";
constexpr const char* kTapForm = "tap,ifname=NAME[,mac=52:54:00:12:34:56][,rate=BYTES]";
constexpr const char* kBridgeForm = "bridge,br=BRIDGE[,mac=52:54:00:12:34:56][,rate=BYTES]";
constexpr const char* kHostOnlyForm =
    "hostonly,name=NAME[,net=CIDR][,hostfwd=PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...[,mac=52:54:00:12:34:56]"
    "[,rate=BYTES]";
constexpr const char* kInternalForm = "internal,name=NAME[,dhcp=CIDR][,mac=52:54:00:12:34:56][,rate=BYTES]";

const char* form_of(const std::string& mode) {
  if (mode == "tap") return kTapForm;
  if (mode == "bridge") return kBridgeForm;
  if (mode == "internal") return kInternalForm;
  if (mode == "hostonly") return kHostOnlyForm;
  if (mode == "none") return "none";
  return kUserForm;
}

// An interface name as Linux takes it: 1 to 15 characters, none of them
// '/', ':' or white space (the kernel refuses those), not "." or "..".
Result<void> check_interface_name(const std::string& value) {
  if (value.empty() || value.size() >= 16) return Error(ErrorCode::kInvalidArgument, "must be 1 to 15 characters");
  if (value == "." || value == ".." || value.find_first_of("/: \t\n") != std::string::npos)
    return Error(ErrorCode::kInvalidArgument, "is not an interface name");
  return ok();
}

std::vector<std::string> split_fields(const std::string& text) {
  std::vector<std::string> fields;
  size_t at = 0;
  for (;;) {
    const size_t comma = text.find(',', at);
    fields.push_back(text.substr(at, comma - at));
    if (comma == std::string::npos) return fields;
    at = comma + 1;
  }
}

Result<bool> parse_on_off(const std::string& value) {
  if (value == "on") return true;
  if (value == "off") return false;
  return Error(ErrorCode::kInvalidArgument, "expected on or off");
}

Result<uint64_t> parse_rate(std::string value) {
  if (value.size() > 2 && value.ends_with("/s")) value.resize(value.size() - 2);
  const uint64_t rate = HV_TRY(parse_size(value));
  if (rate == 0)
    return Error(ErrorCode::kInvalidArgument, "a rate of 0 would stop all traffic; leave rate= out instead");
  return rate;
}

// The keys every mode with a NIC takes.
struct CommonKeys {
  std::optional<MacAddress>& mac;
  std::optional<uint64_t>& rate;
  // Returns false for a key that is not common.
  Result<bool> take(const std::string& key, const std::string& value) {
    if (key == "mac") {
      mac = HV_TRY(parse_mac_address(value));
    } else if (key == "rate") {
      rate = HV_TRY(parse_rate(value));
    } else {
      return false;
    }
    return true;
  }
};

Result<void> take_user_key(UserNetOption& option, const std::string& key, const std::string& value) {
  if (HV_TRY((CommonKeys{option.mac, option.rate}.take(key, value)))) return ok();
  if (key == "hostfwd") {
    option.forwards.push_back(HV_TRY(parse_host_forward(value)));
  } else if (key == "net") {
    const Ipv4Network network = HV_TRY(parse_ipv4_network(value));
    if (network.prefix_length > kLongestUserPrefix || network.prefix_length < 8)
      return Error(ErrorCode::kInvalidArgument, "the prefix must be /8 to /" + std::to_string(kLongestUserPrefix) +
                                                    " (room for the gateway, DNS and the DHCP addresses)");
    option.network = network;
  } else if (key == "ipv6") {
    option.ipv6 = HV_TRY(parse_on_off(value));
  } else if (key == "restrict") {
    option.restrict = HV_TRY(parse_on_off(value));
  } else {
    return Error(ErrorCode::kInvalidArgument, "unknown key");
  }
  return ok();
}

Result<void> take_tap_key(TapNetOption& option, const std::string& key, const std::string& value) {
  if (HV_TRY((CommonKeys{option.mac, option.rate}.take(key, value)))) return ok();
  if (key != "ifname") return Error(ErrorCode::kInvalidArgument, "unknown key");
  HV_TRY(check_interface_name(value));
  option.ifname = value;
  return ok();
}
Result<void> take_bridge_key(BridgeNetOption& option, const std::string& key, const std::string& value) {
  if (HV_TRY((CommonKeys{option.mac, option.rate}.take(key, value)))) return ok();
  if (key != "br") return Error(ErrorCode::kInvalidArgument, "unknown key");
  HV_TRY(check_interface_name(value));
  option.bridge = value;
  return ok();
}

Result<void> take_host_only_key(HostOnlyNetOption& option, const std::string& key, const std::string& value) {
  if (HV_TRY((CommonKeys{option.mac, option.rate}.take(key, value)))) return ok();
  if (key == "name") {
    HV_TRY(check_network_name(value));
    if (value.size() > kLongestHostOnlyName)
      return Error(ErrorCode::kInvalidArgument,
                   "at most " + std::to_string(kLongestHostOnlyName) + " characters (the bridge is hv-NAME)");
    option.name = value;
  } else if (key == "net") {
    const Ipv4Network network = HV_TRY(parse_ipv4_network(value));
    if (network.prefix_length > 29 || network.prefix_length < 8)
      return Error(ErrorCode::kInvalidArgument, "the prefix must be /8 to /29 (room for the host, DHCP and VMs)");
    option.network = network;
  } else if (key == "hostfwd") {
    option.forwards.push_back(HV_TRY(parse_host_forward(value)));
  } else {
    return Error(ErrorCode::kInvalidArgument, "unknown key");
  }
  return ok();
}

Result<void> take_internal_key(InternalNetOption& option, const std::string& key, const std::string& value) {
  if (HV_TRY((CommonKeys{option.mac, option.rate}.take(key, value)))) return ok();
  if (key == "name") {
    HV_TRY(check_network_name(value));
    option.name = value;
  } else if (key == "dhcp") {
    const Ipv4Network network = HV_TRY(parse_ipv4_network(value));
    if (network.prefix_length > 30 || network.prefix_length < 8)
      return Error(ErrorCode::kInvalidArgument, "the prefix must be /8 to /30 (room for the server and a client)");
    option.dhcp = network;
  } else {
    return Error(ErrorCode::kInvalidArgument, "unknown key");
  }
  return ok();
}
}  // namespace

Result<NetOption> parse_net_option(const std::string& text) {
  std::vector<std::string> fields = split_fields(text);
  std::string mode = "user";
  size_t first_key = 0;
  if (fields[0].find('=') == std::string::npos) {
    if (!fields[0].empty()) mode = fields[0];  // "" and ",KEY=..." are user too
    first_key = 1;
  }
  const char* form = form_of(mode);
  auto bad = [&](const std::string& part, const std::string& why) {
    return Error(ErrorCode::kInvalidArgument, "--net " + text + ": " + part + ": " + why + " (expected " + form + ")");
  };
  if (mode != "user" && mode != "tap" && mode != "none" && mode != "internal" && mode != "bridge" && mode != "hostonly")
    return bad(mode, "not a mode; the modes are user, tap, internal, hostonly, bridge and none");

  NetOption option;
  if (mode == "tap") option = TapNetOption{};
  if (mode == "none") option = NoNetOption{};
  if (mode == "bridge") option = BridgeNetOption{};
  if (mode == "hostonly") option = HostOnlyNetOption{};
  if (mode == "internal") option = InternalNetOption{};
  for (size_t i = first_key; i < fields.size(); ++i) {
    const std::string& field = fields[i];
    const size_t eq = field.find('=');
    if (eq == std::string::npos) return bad(field, "not key=value");
    const std::string key = field.substr(0, eq), value = field.substr(eq + 1);
    Result<void> taken = std::visit(
        [&](auto& o) -> Result<void> {
          using T = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<T, UserNetOption>) return take_user_key(o, key, value);
          if constexpr (std::is_same_v<T, TapNetOption>) return take_tap_key(o, key, value);
          if constexpr (std::is_same_v<T, BridgeNetOption>) return take_bridge_key(o, key, value);
          if constexpr (std::is_same_v<T, HostOnlyNetOption>) return take_host_only_key(o, key, value);
          if constexpr (std::is_same_v<T, InternalNetOption>) return take_internal_key(o, key, value);
          return Error(ErrorCode::kInvalidArgument, "none takes no keys");
        },
        option);
    if (!taken) return bad(field, taken.error().message());
  }

  if (auto* tap = std::get_if<TapNetOption>(&option); tap && tap->ifname.empty())
    return bad("tap", "ifname= is required");
  if (auto* bridge = std::get_if<BridgeNetOption>(&option); bridge && bridge->bridge.empty())
    return bad("bridge", "br= is required");
  if (auto* host_only = std::get_if<HostOnlyNetOption>(&option)) {
    if (host_only->name.empty()) return bad("hostonly", "name= is required");
    for (const HostForward& forward : host_only->forwards) {
      if (forward.guest_address && host_only->network && !host_only->network->contains(*forward.guest_address))
        return bad("hostfwd=" + format_host_forward(forward),
                   "the guest address is outside net=" + format_ipv4_network(*host_only->network));
    }
  }
  if (auto* internal = std::get_if<InternalNetOption>(&option); internal && internal->name.empty())
    return bad("internal", "name= is required");
  if (auto* user = std::get_if<UserNetOption>(&option)) {
    for (const HostForward& forward : user->forwards) {
      if (forward.guest_address && !user->network.contains(*forward.guest_address))
        return bad("hostfwd=" + format_host_forward(forward),
                   "the guest address is outside net=" + format_ipv4_network(user->network));
    }
  }
  return option;
}

std::string_view net_mode_name(const NetOption& option) {
  static constexpr std::string_view kNames[] = {"user", "tap", "none", "internal", "bridge", "hostonly"};
  static_assert(std::variant_size_v<NetOption> == std::size(kNames));
  return kNames[option.index()];
}

}  // namespace hostvisor::net
