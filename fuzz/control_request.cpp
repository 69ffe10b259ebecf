// Bytes a control-socket client sends, split into lines as the server does,
// each parsed as a request, its arguments read with every accessor and a
// reply written for it (docs/vm-control-protocol.md).
#include <cstddef>
#include <cstdint>
#include <string>

#include "control/control_protocol.h"

using namespace hostvisor::control;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  LineSplitter lines;
  // Fed in two pieces, so a line split across reads is exercised too.
  const size_t half = size / 2;
  lines.feed(std::string_view(reinterpret_cast<const char*>(data), half));
  std::string line;
  for (int pass = 0; pass < 2; ++pass) {
    for (;;) {
      const LineSplitter::Status status = lines.next(line);
      if (status == LineSplitter::Status::kNeedMore) break;
      if (status == LineSplitter::Status::kTooLong) return 0;
      json id;
      auto request = parse_request(line, &id);
      if (!request) {
        (void)error_reply(id, WireError::kInvalidArgument, request.error().message());
        continue;
      }
      for (const char* name : {"dir", "proto", "host_addr", "guest_addr", "id", "op"})
        (void)string_arg(request->args, name, "");
      for (const char* name : {"nic", "host_port", "guest_port", "bytes"}) (void)uint_arg(request->args, name, 0);
      for (const char* name : {"quit", "replay"}) (void)bool_arg(request->args, name, false);
      (void)ok_reply(request->id, request->args);
    }
    lines.feed(std::string_view(reinterpret_cast<const char*>(data) + half, size - half));
  }
  (void)lines.take_rest();
  return 0;
}
