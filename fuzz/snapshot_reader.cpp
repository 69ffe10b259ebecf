// The snapshot reader on arbitrary files: the input is split into a header
// file and a state file (the first two bytes give the header's length). The
// reader never crashes, never allocates without bound, refuses with a
// one-line message, and what it accepts encodes back to the same bytes (a
// header of the current format; an older one is written as the current).
// An accepted header's memory checksums cover its memory file exactly.
#include "snapshot/snapshot_reader.h"

#include <cstdint>
#include <cstdlib>
#include <span>

#include "snapshot/memory_checksums.h"
#include "snapshot/snapshot_format.h"
#include "snapshot/snapshot_header.h"
#include "snapshot/state_records.h"

using namespace hostvisor::snapshot;

namespace {
void check_message(const hostvisor::Error& error) {
  if (error.message().empty() || error.message().find('\n') != std::string::npos) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t header_length = std::min<size_t>(size - 2, data[0] | (size_t{data[1]} << 8));
  const std::span<const uint8_t> header_bytes(data + 2, header_length);
  const std::span<const uint8_t> state_bytes(data + 2 + header_length, size - 2 - header_length);

  auto header = decode_header(header_bytes);
  if (!header) {
    check_message(header.error());
  } else {
    if (header->format_version == kFormatVersion &&
        encode_header(*header) != std::vector<uint8_t>(header_bytes.begin(), header_bytes.end()))
      std::abort();
    if (!header->memory_crcs.empty() &&
        header->memory_crcs.size() != memory_chunk_count(header->memory_file_size, header->memory_chunk_size))
      std::abort();
  }

  auto records = decode_records(state_bytes);
  if (!records) {
    check_message(records.error());
  } else if (encode_records(*records) != std::vector<uint8_t>(state_bytes.begin(), state_bytes.end())) {
    std::abort();
  }
  if (header) {
    auto checked = check_state_file(*header, state_bytes);
    if (!checked) check_message(checked.error());
  }
  return 0;
}
