// The agent's side of the protocol on an arbitrary byte stream from the
// host: frames are decoded as the agent does, and every JSON frame goes
// through the request parsers (exec, write_file, read_file, set_time's and
// the reply checks). Only the parsers: running what a fuzzer asks for would
// run arbitrary commands on the fuzzing machine.
#include <cstddef>
#include <cstdint>

#include "agent/guest/exec_session.h"
#include "agent/guest/file_transfer.h"
#include "agent/protocol/channel.h"
#include "agent/protocol/frame.h"

using namespace hostvisor;
using namespace hostvisor::agent;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  protocol::FrameDecoder decoder;
  while (size > 0) {
    const size_t n = std::min(size, decoder.room());
    if (!decoder.feed(std::span<const uint8_t>(data, n)).ok()) return 0;
    data += n;
    size -= n;
    for (;;) {
      auto frame = decoder.next();
      if (!frame.ok()) return 0;  // the agent closes the connection here
      if (!*frame) break;
      if ((*frame)->type != protocol::FrameType::kJson) continue;
      auto message = protocol::parse_object((*frame)->payload);
      if (!message.ok()) continue;
      (void)guest::parse_exec_request(*message);
      (void)guest::parse_write_file_request(*message);
      (void)guest::parse_read_file_request(*message);
      (void)protocol::string_field(*message, "op", 64);
      (void)protocol::int_field(*message, "unix_ns");
      (void)protocol::check_reply(*message);
    }
  }
  return 0;
}
