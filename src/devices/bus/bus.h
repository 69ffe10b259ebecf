// An address space of devices: the port-I/O bus (16-bit) or the MMIO bus.
// Ranges never overlap (insert rejects that). Lookups take a shared lock so
// vCPUs dispatch in parallel; PCI BAR moves take the exclusive one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>

#include "base/result.h"
#include "devices/bus/bus_device.h"

namespace hostvisor {

class Bus {
 public:
  explicit Bus(std::string name, uint64_t address_limit = UINT64_MAX)
      : name_(std::move(name)), address_limit_(address_limit) {}

  // Places `device` at [base, base + length). Fails on overlap or overflow.
  Result<void> insert(std::shared_ptr<BusDevice> device, uint64_t base, uint64_t length);
  // Removes the range starting exactly at `base`.
  Result<void> remove(uint64_t base);

  // Dispatches an access. Returns false when no device claims the whole
  // access; a read then yields all-ones, as on a PC with nothing decoding it.
  bool read(uint64_t address, std::span<uint8_t> data) const;
  bool write(uint64_t address, std::span<const uint8_t> data) const;

  const std::string& name() const { return name_; }

 private:
  struct Entry {
    uint64_t length;
    std::shared_ptr<BusDevice> device;
  };
  // Finds the entry holding [address, address + size); nullptr if none.
  const Entry* find(uint64_t address, uint64_t size, uint64_t* base) const;

  std::string name_;
  uint64_t address_limit_;
  mutable std::shared_mutex mutex_;
  std::map<uint64_t, Entry> ranges_;  // base -> entry
};

}  // namespace hostvisor
