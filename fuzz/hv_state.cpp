// The neutral vCPU and interrupt-controller state decoders on arbitrary
// bytes (a snapshot file is user input). The first byte picks the decoder;
// the rest is its payload. Neither may crash, an error is one line, and
// whatever one accepts encodes back to exactly the bytes it read.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "base/state_codec.h"
#include "hv/irqchip_state.h"
#include "hv/vcpu_state.h"

using namespace hostvisor;

namespace {

template <typename State>
void check(const Result<State>& decoded, std::span<const uint8_t> payload, void (*encode)(StateWriter&, const State&)) {
  if (!decoded.ok()) {
    if (decoded.error().message().find('\n') != std::string::npos) std::abort();
    return;
  }
  StateWriter out;
  encode(out, *decoded);
  if (!std::equal(out.bytes().begin(), out.bytes().end(), payload.begin(), payload.end())) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::span<const uint8_t> payload(data + 1, size - 1);
  if (data[0] & 1) {
    check(decode_irqchip_state(payload, kIrqchipStateVersion), payload, encode_irqchip_state);
  } else {
    check(decode_vcpu_state(payload, kVcpuStateVersion), payload, encode_vcpu_state);
  }
  return 0;
}
