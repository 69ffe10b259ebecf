// Guest RAM that devices are using right now: the virtqueue rings each
// virtio transport validated when the driver enabled a queue. Whatever gives
// guest pages back to the host (the balloon, free page reporting) asks here
// first and keeps those pages, so a hostile guest that reports or inflates
// a ring's page cannot pull it from under the device that reads it on every
// notification. The balloon learns of the rings without knowing the devices:
// each transport publishes its own, and the registry lives beside the
// memory it describes (GuestMemory::device_areas()).
//
// Thread-safe: transports publish on vCPU threads (the driver's register
// writes), the balloon asks on whichever thread serves it. The lock is a
// leaf: nothing is called while it is held.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace hostvisor {

class DeviceMemoryAreas {
 public:
  struct Area {
    uint64_t start, end;  // guest-physical, [start, end)
    bool operator==(const Area&) const = default;
  };

  // Replaces everything `owner` published with `areas` (empty: withdraws
  // them). The owner is only a key, never dereferenced.
  void publish(const void* owner, std::vector<Area> areas);
  // Every published area that overlaps [start, end), in address order.
  std::vector<Area> overlapping(uint64_t start, uint64_t end) const;

 private:
  mutable std::mutex mutex_;
  std::map<const void*, std::vector<Area>> areas_;
};

}  // namespace hostvisor
