#include "agent/guest/system_info.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "agent/guest/session.h"

namespace hostvisor::agent::guest {
namespace {

// Bounded: the reply must fit one JSON frame whatever the guest has mounted.
constexpr size_t kMaxFilesystems = 64;
constexpr size_t kMaxInterfaces = 64;

std::string os_name() {
  for (const char* path : {"/etc/os-release", "/usr/lib/os-release"}) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("PRETTY_NAME=", 0) != 0) continue;
      std::string value = line.substr(12);
      if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'')) value = value.substr(1, value.size() - 2);
      return value;
    }
  }
  return "Linux";
}

double uptime_seconds() {
  std::ifstream in("/proc/uptime");
  double up = 0;
  in >> up;
  return up;
}

std::map<std::string, uint64_t> meminfo() {
  std::map<std::string, uint64_t> out;
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (!key.empty() && key.back() == ':') key.pop_back();
    out[key] = kib * 1024;
  }
  return out;
}

nlohmann::json filesystems() {
  nlohmann::json list = nlohmann::json::array();
  std::ifstream in("/proc/mounts");
  std::string line;
  while (std::getline(in, line) && list.size() < kMaxFilesystems) {
    std::istringstream fields(line);
    std::string device, mount_point, type;
    if (!(fields >> device >> mount_point >> type)) continue;
    if (type == "proc" || type == "sysfs" || type == "devpts" || type == "cgroup2" || type == "securityfs" ||
        type == "debugfs" || type == "tracefs" || type == "mqueue" || type == "bpf" || type == "configfs" || type == "pstore" || type == "cgroup")
      continue;
    struct statvfs vfs {};
    if (::statvfs(mount_point.c_str(), &vfs) != 0 || vfs.f_blocks == 0) continue;
    list.push_back({{"mount_point", mount_point},
                    {"type", type},
                    {"device", device},
                    {"total_bytes", uint64_t{vfs.f_blocks} * vfs.f_frsize},
                    {"free_bytes", uint64_t{vfs.f_bavail} * vfs.f_frsize}});
  }
  return list;
}

int prefix_length(const sockaddr* mask) {
  if (mask == nullptr) return 0;
  const auto* bytes = mask->sa_family == AF_INET
                          ? reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(mask)->sin_addr)
                          : reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(mask)->sin6_addr);
  const int n = mask->sa_family == AF_INET ? 4 : 16;
  int bits = 0;
  for (int i = 0; i < n; ++i) bits += __builtin_popcount(bytes[i]);
  return bits;
}

nlohmann::json interfaces() {
  std::map<std::string, nlohmann::json> by_name;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return nlohmann::json::array();
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_name == nullptr) continue;
    if (!by_name.contains(a->ifa_name) && by_name.size() >= kMaxInterfaces) continue;
    auto& entry = by_name[a->ifa_name];
    if (entry.is_null()) entry = {{"name", a->ifa_name}, {"mac", ""}, {"addresses", nlohmann::json::array()}};
    const int family = a->ifa_addr->sa_family;
    if (family == AF_PACKET) {
      const auto* ll = reinterpret_cast<const sockaddr_ll*>(a->ifa_addr);
      if (ll->sll_halen == 6) {
        char mac[18];
        std::snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", ll->sll_addr[0], ll->sll_addr[1], ll->sll_addr[2],
                      ll->sll_addr[3], ll->sll_addr[4], ll->sll_addr[5]);
        entry["mac"] = mac;
      }
    } else if (family == AF_INET || family == AF_INET6) {
      char text[INET6_ADDRSTRLEN] = {};
      const void* addr = family == AF_INET ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr)
                                           : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(a->ifa_addr)->sin6_addr);
      if (::inet_ntop(family, addr, text, sizeof(text)) == nullptr) continue;
      if (entry["addresses"].size() < 32) entry["addresses"].push_back(std::string(text) + "/" + std::to_string(prefix_length(a->ifa_netmask)));
    }
  }
  ::freeifaddrs(list);
  nlohmann::json out = nlohmann::json::array();
  for (auto& [name, entry] : by_name) out.push_back(std::move(entry));
  return out;
}

}  // namespace

Result<nlohmann::json> collect_system_info() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  utsname uts{};
  ::uname(&uts);
  const auto mem = meminfo();
  const auto get = [&](const char* key) -> uint64_t {
    const auto it = mem.find(key);
    return it == mem.end() ? 0 : it->second;
  };
  return nlohmann::json{{"agent", std::string(kAgentName) + " " + kAgentVersion},
                        {"os", os_name()},
                        {"kernel_release", uts.release},
                        {"hostname", uts.nodename},
                        {"uptime_seconds", uptime_seconds()},
                        {"unix_ns", int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec},
                        {"memory_total_bytes", get("MemTotal")},
                        {"memory_available_bytes", get("MemAvailable")},
                        {"filesystems", filesystems()},
                        {"interfaces", interfaces()}};
}

}  // namespace hostvisor::agent::guest
