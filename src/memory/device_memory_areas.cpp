#include "memory/device_memory_areas.h"

#include <algorithm>

namespace hostvisor {

void DeviceMemoryAreas::publish(const void* owner, std::vector<Area> areas) {
  std::lock_guard lock(mutex_);
  if (areas.empty()) {
    areas_.erase(owner);
  } else {
    areas_[owner] = std::move(areas);
  }
}

std::vector<DeviceMemoryAreas::Area> DeviceMemoryAreas::overlapping(uint64_t start, uint64_t end) const {
  std::vector<Area> found;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [owner, areas] : areas_)
      for (const Area& area : areas)
        if (area.start < end && start < area.end) found.push_back(area);
  }
  std::sort(found.begin(), found.end(), [](const Area& a, const Area& b) { return a.start < b.start; });
  return found;
}

}  // namespace hostvisor
