#include "devices/legacy/port_61.h"

#include <string>

namespace hostvisor {

void SystemControlPortB::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i != 0) {
      data[i] = 0xff;
      continue;
    }
    uint8_t value = control_;
    if (refresh_) value |= kRefreshToggle;
    if (timer_ && timer_->channel2_output()) value |= kTimer2Output;
    refresh_ = !refresh_;
    data[i] = value;  // bits 6-7 (IOCHK, SERR) stay clear: nothing raises them
  }
}

void SystemControlPortB::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < data.size(); ++i) {
    if (offset + i != 0) continue;
    control_ = data[i] & kWritableBits;
    if (timer_) timer_->set_channel2_gate(control_ & kTimer2Gate);
  }
}

void SystemControlPortB::reset() {
  std::lock_guard lock(mutex_);
  control_ = 0;
  refresh_ = false;
  if (timer_) timer_->set_channel2_gate(false);
}

SystemControlPortB::State SystemControlPortB::save() const {
  std::lock_guard lock(mutex_);
  return State{control_, refresh_};
}

Result<void> SystemControlPortB::restore(const State& state) {
  if (state.control & ~kWritableBits)
    return Error(ErrorCode::kCorrupt, "port-61: snapshot control value " + std::to_string(state.control) +
                                          " sets read-only bits; the snapshot is damaged");
  std::lock_guard lock(mutex_);
  control_ = state.control;
  refresh_ = state.refresh;
  if (timer_) timer_->set_channel2_gate(control_ & kTimer2Gate);
  return {};
}

void SystemControlPortB::encode_state(StateWriter& out, const State& s) {
  out.put(s.control);
  out.put_bool(s.refresh);
}

SystemControlPortB::State SystemControlPortB::decode_state(StateReader& in) {
  State s;
  s.control = in.get<uint8_t>();
  s.refresh = in.get_bool();
  return s;
}

}  // namespace hostvisor
