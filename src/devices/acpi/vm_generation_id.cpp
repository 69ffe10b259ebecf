#include "devices/acpi/vm_generation_id.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <string>

namespace hostvisor {

namespace {

Result<VmGenerationId::Id> random_id() {
  VmGenerationId::Id id;
  size_t filled = 0;
  while (filled < id.size()) {
    const ssize_t n = ::getrandom(id.data() + filled, id.size() - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error::from_errno("reading random bytes for the VM generation ID");
    filled += static_cast<size_t>(n);
  }
  return id;
}

}  // namespace

VmGenerationId::VmGenerationId(GuestMemory& memory, uint64_t address, std::function<void()> notify)
    : memory_(memory), address_(address), notify_(std::move(notify)) {}

Result<void> VmGenerationId::write_id() {
  auto written = memory_.write(GuestAddress(address_), id_);
  if (!written) return std::move(written).error().with_context("writing the VM generation ID");
  return ok();
}

Result<void> VmGenerationId::generate() {
  id_ = HV_TRY(random_id());
  return write_id();
}

Result<void> VmGenerationId::change() {
  HV_TRY(generate());
  if (notify_) notify_();
  return ok();
}

Result<void> VmGenerationId::restore(const State& state) {
  if (state.address % kAlignment != 0 || !memory_.contains(GuestAddress(state.address), state.id.size())) {
    char address[32];
    std::snprintf(address, sizeof address, "%#llx", static_cast<unsigned long long>(state.address));
    return Error(ErrorCode::kCorrupt,
                 std::string("the VM generation ID's address ") + address + " is not an 8-byte aligned place in guest RAM");
  }
  address_ = state.address;
  id_ = state.id;
  return write_id();
}

void VmGenerationId::encode_state(StateWriter& out, const State& state) {
  out.put(state.address);
  out.put_raw(state.id);
}

VmGenerationId::State VmGenerationId::decode_state(StateReader& in) {
  State state;
  state.address = in.get<uint64_t>();
  in.get_raw(state.id);
  return state;
}

}  // namespace hostvisor
