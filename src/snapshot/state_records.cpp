#include "snapshot/state_records.h"

#include <cstring>
#include <set>

#include "base/state_codec.h"
#include "snapshot/crc32c.h"
#include "snapshot/snapshot_format.h"

namespace hostvisor::snapshot {

void append_record(std::vector<uint8_t>& file, const StateRecord& record) {
  StateWriter out;
  out.put(kRecordMagic);
  out.put_string(record.tag);
  out.put(record.version);
  out.put_bytes(record.payload);
  const uint32_t crc = crc32c(out.bytes());
  out.put(crc);
  file.insert(file.end(), out.bytes().begin(), out.bytes().end());
}

std::vector<uint8_t> encode_records(const std::vector<StateRecord>& records) {
  std::vector<uint8_t> file;
  for (const StateRecord& record : records) append_record(file, record);
  return file;
}

Result<std::vector<StateRecord>> decode_records(std::span<const uint8_t> file) {
  std::vector<StateRecord> records;
  std::set<std::string> tags;
  size_t offset = 0;
  while (offset < file.size()) {
    const std::string where =
        "state record " + std::to_string(records.size()) + " (at byte " + std::to_string(offset) + ")";
    if (records.size() >= kMaxRecords)
      return Error(ErrorCode::kCorrupt, "snapshot state: more than " + std::to_string(kMaxRecords) + " records");
    StateReader in(file.subspan(offset), where);
    const uint32_t magic = in.get<uint32_t>();
    if (in.ok() && magic != kRecordMagic) in.fail("no record starts here (bad magic)");
    StateRecord record;
    record.tag = in.get_string(kMaxTagLength);
    record.version = in.get<uint32_t>();
    record.payload = in.get_bytes(kMaxRecordPayload);
    const size_t framed = file.size() - offset - in.remaining();
    const uint32_t crc = in.get<uint32_t>();
    if (!in.ok()) return in.finish().error().with_context("snapshot state");
    if (crc32c(file.subspan(offset, framed)) != crc)
      return Error(ErrorCode::kCorrupt,
                   "snapshot state: " + where + ": checksum mismatch (the file was changed or damaged)");
    if (!tags.insert(record.tag).second)
      return Error(ErrorCode::kCorrupt, "snapshot state: record '" + record.tag + "' appears twice");
    offset += framed + sizeof crc;
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace hostvisor::snapshot
