// The learning part of a switch: which port each source MAC was last seen
// on. Entries age out (a VM that moved or left stops attracting its frames),
// and the table is bounded: a port that sends from ever new source MACs
// evicts the least recently seen entries, so the cost is frames flooded
// rather than host memory.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>

#include "net/mac_address.h"

namespace hostvisor::net {

using SwitchClock = std::chrono::steady_clock;
using PortId = uint32_t;

class MacTable {
 public:
  MacTable(size_t max_entries, SwitchClock::duration max_age) : max_entries_(max_entries), max_age_(max_age) {}

  // Records that `mac` (a unicast source) was seen on `port` at `now`.
  void learn(const MacAddress& mac, PortId port, SwitchClock::time_point now);
  // The port `mac` was last seen on, unless that was longer ago than the max age.
  std::optional<PortId> lookup(const MacAddress& mac, SwitchClock::time_point now) const;
  // Forgets every entry of `port` (it left).
  void forget_port(PortId port);
  // Drops entries older than the max age.
  void expire(SwitchClock::time_point now);

  size_t size() const { return entries_.size(); }

 private:
  static uint64_t key(const MacAddress& mac);
  struct Entry {
    uint64_t mac;
    PortId port;
    SwitchClock::time_point seen;
  };

  const size_t max_entries_;
  const SwitchClock::duration max_age_;
  // Most recently seen first, so eviction and aging take from the back.
  std::list<Entry> by_age_;
  std::unordered_map<uint64_t, std::list<Entry>::iterator> entries_;
};

}  // namespace hostvisor::net
