// One record of a machine snapshot: a component (a vCPU, the interrupt
// controllers, a device, a transport) under a tag, with its State version
// and the two halves of its save and restore. The Machine keeps one per
// component in machine order; the tags are the snapshot's device list.
// The snapshot layer sees only tags, versions and bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <type_traits>

#include "base/result.h"
#include "base/state_codec.h"

namespace hostvisor {

struct StateComponent {
  std::string tag;
  uint32_t version = 1;
  std::function<Result<void>(StateWriter& out)> save;
  // `payload` is the record's; `version` is the one it was written with.
  std::function<Result<void>(std::span<const uint8_t> payload, uint32_t version)> restore;
};

// A device with the usual State interface: save(), restore(State) (void or
// Result<void>), static encode_state()/decode_state() and kStateVersion.
template <typename Device>
StateComponent device_state_component(std::string tag, std::shared_ptr<Device> device) {
  StateComponent component;
  component.tag = std::move(tag);
  component.version = Device::kStateVersion;
  component.save = [device](StateWriter& out) -> Result<void> {
    Device::encode_state(out, device->save());
    return ok();
  };
  component.restore = [device, tag = component.tag](std::span<const uint8_t> payload,
                                                    uint32_t version) -> Result<void> {
    if (version != Device::kStateVersion)
      return Error(ErrorCode::kUnsupported, tag + ": state version " + std::to_string(version) +
                                                " is not one this hostvisor reads (" +
                                                std::to_string(Device::kStateVersion) + ")");
    StateReader in(payload, tag);
    auto state = Device::decode_state(in);
    HV_TRY(in.finish());
    if constexpr (std::is_void_v<decltype(device->restore(state))>) {
      device->restore(state);
    } else {
      HV_TRY(device->restore(state));
    }
    return ok();
  };
  return component;
}

}  // namespace hostvisor
