#include "net/switch/mac_table.h"

namespace hostvisor::net {

uint64_t MacTable::key(const MacAddress& mac) {
  uint64_t k = 0;
  for (uint8_t b : mac) k = k << 8 | b;
  return k;
}

void MacTable::learn(const MacAddress& mac, PortId port, SwitchClock::time_point now) {
  if (max_entries_ == 0) return;
  const uint64_t k = key(mac);
  if (auto it = entries_.find(k); it != entries_.end()) {
    it->second->port = port;
    it->second->seen = now;
    by_age_.splice(by_age_.begin(), by_age_, it->second);
    return;
  }
  if (entries_.size() >= max_entries_) {
    entries_.erase(by_age_.back().mac);
    by_age_.pop_back();
  }
  by_age_.push_front({k, port, now});
  entries_.emplace(k, by_age_.begin());
}

std::optional<PortId> MacTable::lookup(const MacAddress& mac, SwitchClock::time_point now) const {
  const auto it = entries_.find(key(mac));
  if (it == entries_.end() || now - it->second->seen > max_age_) return std::nullopt;
  return it->second->port;
}

void MacTable::forget_port(PortId port) {
  for (auto it = by_age_.begin(); it != by_age_.end();) {
    if (it->port == port) {
      entries_.erase(it->mac);
      it = by_age_.erase(it);
    } else {
      ++it;
    }
  }
}

void MacTable::expire(SwitchClock::time_point now) {
  while (!by_age_.empty() && now - by_age_.back().seen > max_age_) {
    entries_.erase(by_age_.back().mac);
    by_age_.pop_back();
  }
}

}  // namespace hostvisor::net
