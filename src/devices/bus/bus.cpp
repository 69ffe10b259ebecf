#include "devices/bus/bus.h"

#include <cstdio>
#include <cstring>
#include <mutex>

namespace hostvisor {

static std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

Result<void> Bus::insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t length) {
  if (!device) return Error(ErrorCode::kInvalidArgument, name_ + " bus: no device");
  if (length == 0) return Error(ErrorCode::kInvalidArgument, name_ + " bus: empty range for " + std::string(device->name()));
  const uint64_t last = base + (length - 1);
  if (last < base || last > address_limit_)
    return Error(ErrorCode::kOutOfRange, name_ + " bus: range " + hex(base) + "+" + hex(length) + " for " +
                                             std::string(device->name()) + " is outside the bus");
  std::unique_lock lock(mutex_);
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first <= last)
    return Error(ErrorCode::kBusy, name_ + " bus: " + std::string(device->name()) + " at " + hex(base) +
                                       " overlaps " + std::string(next->second.device->name()) + " at " +
                                       hex(next->first));
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + (prev->second.length - 1) >= base)
      return Error(ErrorCode::kBusy, name_ + " bus: " + std::string(device->name()) + " at " + hex(base) +
                                         " overlaps " + std::string(prev->second.device->name()) + " at " +
                                         hex(prev->first));
  }
  ranges_.emplace(base, Entry{length, std::move(device)});
  return {};
}

Result<void> Bus::remove(uint64_t base) {
  std::unique_lock lock(mutex_);
  if (ranges_.erase(base) == 0) return Error(ErrorCode::kNotFound, name_ + " bus: nothing at " + hex(base));
  return {};
}

const Bus::Entry* Bus::find(uint64_t address, uint64_t size, uint64_t* base) const {
  auto it = ranges_.upper_bound(address);
  if (it == ranges_.begin()) return nullptr;
  --it;
  const uint64_t offset = address - it->first;
  if (offset >= it->second.length || size > it->second.length - offset) return nullptr;
  *base = it->first;
  return &it->second;
}

bool Bus::read(uint64_t address, std::span<uint8_t> data) const {
  std::shared_ptr<BusDevice> device;
  uint64_t base = 0;
  {
    std::shared_lock lock(mutex_);
    const Entry* e = find(address, data.size(), &base);
    if (e) device = e->device;
  }
  if (!device) {
    std::memset(data.data(), 0xff, data.size());
    return false;
  }
  device->read(address - base, data);
  return true;
}

bool Bus::write(uint64_t address, std::span<const uint8_t> data) const {
  std::shared_ptr<BusDevice> device;
  uint64_t base = 0;
  {
    std::shared_lock lock(mutex_);
    const Entry* e = find(address, data.size(), &base);
    if (e) device = e->device;
  }
  if (!device) return false;
  device->write(address - base, data);
  return true;
}

}  // namespace hostvisor
