// The snapshot records of the VM generation ID and the PCI host bridge on
// arbitrary bytes (a snapshot file is user input): decoded, then restored
// into a fresh device. The first byte picks the device; the rest is the
// record's payload. Nothing may crash, an error is one line, a restored
// VM generation ID lies inside guest RAM, and a payload accepted whole
// encodes back to exactly its bytes.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "base/state_codec.h"
#include "devices/acpi/vm_generation_id.h"
#include "devices/pci/pci_host_bridge.h"

using namespace hostvisor;

namespace {

void one_line(const Result<void>& result) {
  if (!result.ok() && result.error().message().find('\n') != std::string::npos) std::abort();
}

template <typename Device>
bool decode(std::span<const uint8_t> payload, typename Device::State& state) {
  StateReader in(payload, "fuzz");
  state = Device::decode_state(in);
  const auto finished = in.finish();
  one_line(finished);
  if (!finished.ok()) return false;
  StateWriter out;
  Device::encode_state(out, state);
  if (!std::equal(out.bytes().begin(), out.bytes().end(), payload.begin(), payload.end())) std::abort();
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::span<const uint8_t> payload(data + 1, size - 1);
  if (data[0] & 1) {
    PciHostBridge::State state;
    if (!decode<PciHostBridge>(payload, state)) return 0;
    PciHostBridge bridge;
    one_line(bridge.restore(state));
    (void)bridge.config_read(0x9d, 1);
  } else {
    static GuestMemory memory = GuestMemory::create({{GuestAddress(0), 1 << 20}}).value();
    VmGenerationId::State state;
    if (!decode<VmGenerationId>(payload, state)) return 0;
    VmGenerationId id(memory, 0xef000, nullptr);
    const auto restored = id.restore(state);
    one_line(restored);
    if (restored.ok() && !memory.contains(GuestAddress(id.address()), 16)) std::abort();
  }
  return 0;
}
