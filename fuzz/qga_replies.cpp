// The host's reading of qemu-guest-agent's byte stream: the input is split
// at random points and fed to QgaReplyReader (which starts waiting for the
// 0xFF sentinel, as after a sync), and every reply it yields goes through
// every decoder. Nothing may crash, the reader must make progress on the
// bytes it is given, and a decoded file chunk never exceeds what was asked.
//
// Input: [0] the feed's step size (1..256), the rest the stream.
#include <cstdint>
#include <cstring>

#include "agent/qga/base64.h"
#include "agent/qga/qga_replies.h"
#include "agent/qga/qga_reply_reader.h"
#include "fuzz/fuzz_input.h"

using namespace hostvisor;
using namespace hostvisor::agent;
using namespace hostvisor::agent::qga;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t step = 1 + hostvisor::fuzz::take<uint8_t>(data, size);
  constexpr size_t kLimit = 4096;
  QgaReplyReader reader(kLimit);
  reader.expect_sentinel();
  std::span<const uint8_t> rest(data, size);
  std::span<const uint8_t> window = rest.first(std::min(step, rest.size()));
  while (!rest.empty()) {
    size_t used = 0;
    auto reply = reader.feed(window, used);
    if (used > window.size()) __builtin_trap();
    rest = rest.subspan(used);
    window = window.subspan(used);
    if (window.empty()) window = rest.first(std::min(step, rest.size()));
    if (!reply) continue;
    if (!*reply) {
      if (used == 0 && !window.empty()) __builtin_trap();  // no progress with bytes at hand
      continue;
    }
    const nlohmann::json& r = **reply;
    (void)reply_return(r);
    (void)is_sync_reply(r, 7);
    (void)decode_version(r);
    AgentInfo info;
    (void)decode_osinfo(r, info);
    (void)decode_host_name(r);
    (void)decode_interfaces(r);
    (void)decode_filesystems(r);
    (void)decode_exec_pid(r);
    (void)decode_exec_status(r);
    (void)decode_file_handle(r);
    if (auto chunk = decode_file_read(r, 64); chunk && chunk->data.size() > 64) __builtin_trap();
    (void)decode_file_write(r, 64);
  }
  // base64 round-trips whatever bytes it is given.
  auto back = base64_decode(base64_encode(std::span(data, size)));
  if (!back || back->size() != size || (size && std::memcmp(back->data(), data, size) != 0)) __builtin_trap();
  return 0;
}
