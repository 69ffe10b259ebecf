#include "snapshot/snapshot_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "snapshot/crc32c.h"
#include "snapshot/memory_checksums.h"
#include "snapshot/snapshot_format.h"

namespace hostvisor::snapshot {

namespace {

Result<std::vector<uint8_t>> read_small_file(const std::string& path, uint64_t limit) {
  UniqueFd fd = HV_TRY(open_file(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return Error::from_errno("stat of " + path);
  if (static_cast<uint64_t>(st.st_size) > limit)
    return Error(ErrorCode::kCorrupt, path + " holds " + std::to_string(st.st_size) + " bytes, more than the " +
                                          std::to_string(limit) + " expected");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("reading " + path);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

}  // namespace

Result<std::vector<StateRecord>> check_state_file(const SnapshotHeader& header, std::span<const uint8_t> state) {
  if (state.size() != header.state_file_size)
    return Error(ErrorCode::kCorrupt, "snapshot state file holds " + std::to_string(state.size()) +
                                          " bytes, the header says " + std::to_string(header.state_file_size) +
                                          (state.size() < header.state_file_size ? " (truncated)" : ""));
  auto records = decode_records(state);
  if (!records) return records;
  if (crc32c(state) != header.state_crc)
    return Error(ErrorCode::kCorrupt, "snapshot state file: checksum mismatch with the header");
  return records;
}

Result<Snapshot> Snapshot::open(const std::string& dir) {
  Snapshot snapshot;
  snapshot.dir_ = dir;
  auto header_bytes = read_small_file(snapshot.path_of(kHeaderFile), 20 + kMaxHeaderPayload);
  if (!header_bytes) {
    if (header_bytes.error().code() == ErrorCode::kNotFound)
      return Error(ErrorCode::kNotFound,
                   "snapshot " + dir + ": no header file; not a snapshot, or one whose save did not finish");
    return std::move(header_bytes).error().with_context("snapshot " + dir);
  }
  auto header = decode_header(*header_bytes);
  if (!header) return std::move(header).error().with_context("snapshot " + dir);
  snapshot.header_ = std::move(*header);

  // The header says how long the state file is; a longer one is refused
  // before it is read.
  auto state = read_small_file(snapshot.path_of(kStateFile), snapshot.header_.state_file_size);
  if (!state) return std::move(state).error().with_context("snapshot " + dir);
  auto records = check_state_file(snapshot.header_, *state);
  if (!records) return std::move(records).error().with_context("snapshot " + dir);
  snapshot.records_ = std::move(*records);

  auto memory = open_file(snapshot.path_of(kMemoryFile), O_RDONLY);
  if (!memory) return std::move(memory).error().with_context("snapshot " + dir);
  struct stat st;
  if (::fstat(memory->get(), &st) < 0) return Error::from_errno("stat of " + snapshot.path_of(kMemoryFile));
  if (static_cast<uint64_t>(st.st_size) != snapshot.header_.memory_file_size)
    return Error(ErrorCode::kCorrupt, "snapshot " + dir + ": the memory file holds " + std::to_string(st.st_size) +
                                          " bytes, the header says " +
                                          std::to_string(snapshot.header_.memory_file_size));
  snapshot.memory_ = std::move(*memory);

  for (const FrozenDisk& disk : snapshot.header_.disks) {
    const std::string path = snapshot.path_of(disk.file);
    if (::stat(path.c_str(), &st) < 0)
      return Error(ErrorCode::kNotFound, "snapshot " + dir + ": frozen disk image " + disk.file + " is missing");
    const int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    if (static_cast<uint64_t>(st.st_size) != disk.size || mtime != disk.mtime_ns)
      return Error(ErrorCode::kCorrupt, "snapshot " + dir + ": frozen disk image " + disk.file +
                                            " was changed after the snapshot (size or modification time differ)");
  }
  return snapshot;
}

Result<void> Snapshot::verify_memory() const {
  auto verified = verify_memory_file(memory_.get(), header_);
  if (!verified) return std::move(verified).error().with_context("snapshot " + dir_);
  return {};
}

Result<const StateRecord*> Snapshot::record(std::string_view tag) const {
  for (const StateRecord& record : records_)
    if (record.tag == tag) return &record;
  return Error(ErrorCode::kCorrupt, "snapshot " + dir_ + ": no state record for " + std::string(tag));
}

}  // namespace hostvisor::snapshot
