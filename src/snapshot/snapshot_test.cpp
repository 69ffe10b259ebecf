#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "snapshot/crc32c.h"
#include "snapshot/memory_checksums.h"
#include "snapshot/snapshot_format.h"
#include "snapshot/snapshot_reader.h"
#include "snapshot/snapshot_writer.h"

namespace hostvisor::snapshot {
namespace {

namespace fs = std::filesystem;

class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "hv-snapshot-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~ScratchDir() {
    // The snapshot files are read-only; the directories are not.
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string path() const { return path_; }

 private:
  std::string path_;
};

std::vector<uint8_t> bytes_of(const std::string& text) { return {text.begin(), text.end()}; }

SnapshotHeader sample_header() {
  SnapshotHeader header;
  header.machine_config = bytes_of("memory=16M cpus=1");
  header.devices = {"vcpu.0", "serial", "pci.00:01.0"};
  header.regions = {{0, 1 << 20, 0}, {1 << 24, 2 << 20, 1 << 20}};
  header.memory_file_size = 3 << 20;
  header.state_file_size = 100;
  header.state_crc = 0x1234;
  header.disks = {{0, "disk0.img", 4096, 17}};
  header.memory_chunk_size = 2 << 20;
  header.memory_crcs = {0xdeadbeef, 0x12345678};
  return header;
}

std::vector<StateRecord> sample_records() {
  return {{"vcpu.0", 1, bytes_of("registers")}, {"serial", 2, bytes_of("uart")}, {"pci.00:01.0", 1, {}}};
}

TEST(Crc32cTest, KnownAnswer) {
  // The check value of CRC-32C (RFC 3720).
  EXPECT_EQ(crc32c(bytes_of("123456789")), 0xe3069283u);
}

TEST(Crc32cTest, ZerosAreFoldedInWithoutReadingThem) {
  const std::vector<uint8_t> zeros(3 * 4096 + 17, 0);
  for (uint32_t start : {0u, 0xe3069283u, 0x1u})
    for (size_t length : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{4096}, zeros.size()})
      EXPECT_EQ(crc32c_zeros(start, length), crc32c(std::span(zeros).first(length), start)) << length;
  // Every length, the word-wide path's tail too.
  std::vector<uint8_t> bytes(64);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 37 + 1);
  uint32_t bytewise = 0;
  for (size_t i = 0; i < bytes.size(); ++i) bytewise = crc32c(std::span(bytes).subspan(i, 1), bytewise);
  EXPECT_EQ(crc32c(bytes), bytewise);
}

TEST(MemoryChecksummerTest, SumsTheFileAsItReadsWithHolesAsZeros) {
  // 5 chunks of 4 KiB and a short last one; data in pieces that cross chunks.
  constexpr uint64_t kChunk = 4096, kSize = 5 * kChunk + 512;
  std::vector<uint8_t> file(kSize, 0);
  for (uint64_t i = 4000; i < 9000; ++i) file[i] = static_cast<uint8_t>(i);
  file[kSize - 1] = 9;
  MemoryChecksummer sums(kSize, kChunk);
  sums.add(4000, std::span(file).subspan(4000, 1000));
  sums.add(5000, std::span(file).subspan(5000, 4000));
  sums.add(kSize - 1, std::span(file).subspan(kSize - 1, 1));
  const std::vector<uint32_t> crcs = sums.finish();
  ASSERT_EQ(crcs.size(), 6u);
  for (uint64_t i = 0; i < 6; ++i)
    EXPECT_EQ(crcs[i], crc32c(std::span(file).subspan(i * kChunk, std::min(kChunk, kSize - i * kChunk)))) << i;
  EXPECT_EQ(memory_chunk_size_for(1ull << 30), kMemoryChunkSize);
  EXPECT_LE(memory_chunk_count(1ull << 40, memory_chunk_size_for(1ull << 40)), kMaxMemoryChunks);
}

TEST(SnapshotHeaderTest, RoundTrips) {
  const SnapshotHeader header = sample_header();
  auto decoded = decode_header(encode_header(header));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message();
  EXPECT_EQ(decoded->format_version, kFormatVersion);
  EXPECT_EQ(decoded->hostvisor_version, kHostvisorVersion);
  SnapshotHeader expected = header;
  expected.format_version = kFormatVersion;
  expected.hostvisor_version = kHostvisorVersion;
  EXPECT_EQ(*decoded, expected);
}

TEST(SnapshotHeaderTest, EveryFlippedByteIsDetected) {
  const std::vector<uint8_t> file = encode_header(sample_header());
  for (size_t i = 0; i < file.size(); ++i) {
    for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      std::vector<uint8_t> damaged = file;
      damaged[i] ^= flip;
      EXPECT_FALSE(decode_header(damaged).ok()) << "byte " << i << " ^ " << int(flip);
    }
  }
}

TEST(SnapshotHeaderTest, EveryTruncationIsDetected) {
  const std::vector<uint8_t> file = encode_header(sample_header());
  for (size_t length = 0; length < file.size(); ++length) {
    auto decoded = decode_header(std::span(file).first(length));
    EXPECT_FALSE(decoded.ok()) << length;
  }
}

TEST(SnapshotHeaderTest, SaysWhatIsWrong) {
  std::vector<uint8_t> file = encode_header(sample_header());
  auto foreign = decode_header(bytes_of("QFI\xfb this is a qcow2 image, not a snapshot"));
  ASSERT_FALSE(foreign.ok());
  EXPECT_NE(foreign.error().message().find("not a hostvisor snapshot"), std::string::npos);

  std::vector<uint8_t> newer = file;
  newer[8] = kFormatVersion + 1;
  auto refused = decode_header(newer);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kUnsupported);
  EXPECT_NE(refused.error().message().find("newer hostvisor"), std::string::npos) << refused.error().message();

  std::vector<uint8_t> retired = file;
  retired[8] = 0;
  auto old = decode_header(retired);
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.error().message().find("no longer supported"), std::string::npos) << old.error().message();

  auto truncated = decode_header(std::span(file).first(file.size() - 3));
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.error().message().find("truncated"), std::string::npos) << truncated.error().message();

  std::vector<uint8_t> damaged = file;
  damaged[30] ^= 4;
  auto corrupt = decode_header(damaged);
  ASSERT_FALSE(corrupt.ok());
  EXPECT_NE(corrupt.error().message().find("checksum"), std::string::npos) << corrupt.error().message();
}

// A format 1 header (no memory checksums), as hostvisor wrote it before
// format 2: the fields before the checksums, under version 1.
std::vector<uint8_t> format_1_header(SnapshotHeader header) {
  header.memory_chunk_size = 0;
  header.memory_crcs.clear();
  std::vector<uint8_t> file = encode_header(header);
  file.resize(file.size() - 12);  // u64 chunk size, u32 count
  const uint32_t version = 1, length = static_cast<uint32_t>(file.size() - 20), zero = 0;
  std::memcpy(file.data() + 8, &version, 4);
  std::memcpy(file.data() + 12, &length, 4);
  std::memcpy(file.data() + 16, &zero, 4);
  const uint32_t crc = crc32c(std::span(file).subspan(20), crc32c(std::span(file).first(16)));
  std::memcpy(file.data() + 16, &crc, 4);
  return file;
}

TEST(SnapshotHeaderTest, AFormat1HeaderStillReadsWithoutMemoryChecksums) {
  auto decoded = decode_header(format_1_header(sample_header()));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message();
  EXPECT_EQ(decoded->format_version, 1u);
  EXPECT_TRUE(decoded->memory_crcs.empty());
  EXPECT_EQ(decoded->regions, sample_header().regions);
}

TEST(SnapshotHeaderTest, RefusesMemoryChecksumsThatDoNotCoverTheFile) {
  SnapshotHeader header = sample_header();
  header.memory_crcs.push_back(1);  // 3 for 2 chunks
  auto decoded = decode_header(encode_header(header));
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message().find("3 memory checksums"), std::string::npos) << decoded.error().message();
  header = sample_header();
  header.memory_chunk_size = 3 << 20;  // not a power of two
  decoded = decode_header(encode_header(header));
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message().find("chunk size"), std::string::npos) << decoded.error().message();
}

TEST(StateRecordsTest, RoundTrip) {
  auto decoded = decode_records(encode_records(sample_records()));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message();
  EXPECT_EQ(*decoded, sample_records());
}

TEST(StateRecordsTest, EveryFlippedByteIsDetected) {
  const std::vector<uint8_t> file = encode_records(sample_records());
  SnapshotHeader header;
  header.state_file_size = file.size();
  header.state_crc = crc32c(file);
  ASSERT_TRUE(check_state_file(header, file).ok());
  for (size_t i = 0; i < file.size(); ++i) {
    for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      std::vector<uint8_t> damaged = file;
      damaged[i] ^= flip;
      // The record's own checksum catches it (and names the record).
      EXPECT_FALSE(decode_records(damaged).ok()) << "byte " << i << " ^ " << int(flip);
      EXPECT_FALSE(check_state_file(header, damaged).ok()) << "byte " << i;
    }
  }
  for (size_t length = 0; length < file.size(); ++length)
    EXPECT_FALSE(check_state_file(header, std::span(file).first(length)).ok()) << length;
}

TEST(StateRecordsTest, DuplicateTagRefused) {
  auto records = sample_records();
  records.push_back(records[0]);
  auto decoded = decode_records(encode_records(records));
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message().find("twice"), std::string::npos);
}

// 4 MiB of RAM in two regions with a few pages written.
GuestMemory sample_memory(uint8_t seed) {
  auto memory = GuestMemory::create({{GuestAddress(0), 1 << 20}, {GuestAddress(1ull << 32), 3 << 20}});
  EXPECT_TRUE(memory.ok());
  EXPECT_TRUE(memory->fill(GuestAddress(0x1000), seed, 0x2000).ok());
  EXPECT_TRUE(memory->write_obj(GuestAddress(0x80008), uint64_t{0x1122334455667788ull} + seed).ok());
  EXPECT_TRUE(memory->fill(GuestAddress((1ull << 32) + (2 << 20)), seed + 1, 4096).ok());
  // Touched, but zero again: must become a hole too.
  EXPECT_TRUE(memory->fill(GuestAddress(0x40000), 0xaa, 4096).ok());
  EXPECT_TRUE(memory->fill(GuestAddress(0x40000), 0, 4096).ok());
  return std::move(*memory);
}

SnapshotContents sample_contents(const std::string& tag) {
  SnapshotContents contents;
  contents.header.machine_config = bytes_of("config " + tag);
  contents.header.devices = {"vcpu.0", "serial"};
  contents.records = {{"vcpu.0", 1, bytes_of("cpu " + tag)}, {"serial", 1, bytes_of("uart " + tag)}};
  return contents;
}

void expect_same_ram(const GuestMemory& a, const GuestMemory& b) {
  ASSERT_EQ(a.regions().size(), b.regions().size());
  for (size_t i = 0; i < a.regions().size(); ++i) {
    ASSERT_EQ(a.regions()[i].size, b.regions()[i].size);
    EXPECT_EQ(std::memcmp(a.regions()[i].host, b.regions()[i].host, a.regions()[i].size), 0) << "region " << i;
  }
}

TEST(SnapshotFilesTest, WritesReadOnlySparseFilesThatRestoreByMapAndByCopy) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/snap";
  GuestMemory memory = sample_memory(7);
  auto stats = write_snapshot(dir, sample_contents("A"), memory);
  ASSERT_TRUE(stats.ok()) << stats.error().message();
  EXPECT_EQ(stats->memory_data_bytes, 4u * 4096);  // two filled pages, one word's page, one page up high

  for (const char* file : {kHeaderFile, kStateFile, kMemoryFile}) {
    struct stat st;
    ASSERT_EQ(::stat((dir + "/" + file).c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0444u) << file;
  }
  struct stat st;
  ASSERT_EQ(::stat((dir + "/" + kMemoryFile).c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 4u << 20);
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, 4u * 4096 + 64 * 1024) << "the memory file is not sparse";
  for (const auto& entry : fs::directory_iterator(scratch.path()))
    EXPECT_EQ(entry.path().filename(), "snap") << "left behind: " << entry.path();

  auto snapshot = Snapshot::open(dir);
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().message();
  EXPECT_EQ(snapshot->records(), sample_contents("A").records);
  EXPECT_EQ(snapshot->header().machine_config, bytes_of("config A"));
  EXPECT_EQ(snapshot->header().regions, describe_regions(memory));

  auto mapped =
      GuestMemory::map_private(region_specs(snapshot->header().regions), UniqueFd(::dup(snapshot->memory_fd())));
  ASSERT_TRUE(mapped.ok()) << mapped.error().message();
  expect_same_ram(memory, *mapped);
  // Copy-on-write: the guest writes, the file does not change.
  ASSERT_TRUE(mapped->fill(GuestAddress(0x1000), 0x55, 16).ok());
  auto copied = GuestMemory::create(region_specs(snapshot->header().regions));
  ASSERT_TRUE(copied.ok());
  ASSERT_TRUE(read_memory_image(snapshot->memory_fd(), *copied).ok());
  expect_same_ram(memory, *copied);
}

// A re-save from a mapped restore writes exactly the RAM the guest has: the
// source's data as it still reads, the pages written since (copy-on-write,
// in holes of the source too), and nothing for pages read but never written.
TEST(SnapshotFilesTest, ASaveFromAMappedRestoreHasTheSourcesDataAndThePagesWrittenSince) {
  ScratchDir scratch;
  GuestMemory original = sample_memory(3);
  ASSERT_TRUE(write_snapshot(scratch.path() + "/first", sample_contents("A"), original).ok());
  auto first = Snapshot::open(scratch.path() + "/first");
  ASSERT_TRUE(first.ok());
  auto mapped = GuestMemory::map_private(region_specs(first->header().regions), UniqueFd(::dup(first->memory_fd())));
  ASSERT_TRUE(mapped.ok());
  ASSERT_TRUE(mapped->fill(GuestAddress(0x1000), 0x55, 16).ok());                       // source data, changed
  ASSERT_TRUE(mapped->fill(GuestAddress(0x2000), 0, 4096).ok());                        // source data, zeroed
  ASSERT_TRUE(mapped->fill(GuestAddress(0x90000), 0x66, 4096).ok());                    // a hole, written
  ASSERT_TRUE(mapped->fill(GuestAddress((1ull << 32) + (1 << 20) + 8), 0x77, 1).ok());  // high region hole
  uint8_t byte = 0;
  ASSERT_TRUE(mapped->read(GuestAddress(0xa0000), std::span(&byte, 1)).ok());  // a hole, only read

  auto stats = write_snapshot(scratch.path() + "/second", sample_contents("B"), *mapped);
  ASSERT_TRUE(stats.ok()) << stats.error().message();
  // The save did not read RAM the guest never touched (a scan would have
  // faulted every page in).
  auto present = [](const uint8_t* host) {
    UniqueFd pagemap(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    uint64_t entry = 0;
    EXPECT_EQ(::pread(pagemap.get(), &entry, 8, static_cast<off_t>(reinterpret_cast<uintptr_t>(host) / 4096 * 8)), 8);
    return (entry >> 63) != 0;
  };
  EXPECT_TRUE(present(mapped->regions()[0].host + 0x90000));
  EXPECT_FALSE(present(mapped->regions()[0].host + 0xc0000));
  EXPECT_FALSE(present(mapped->regions()[1].host + (2 << 20) + 0x80000));
  // 0x1000 (changed), 0x80000 (the word), the high page from the source;
  // 0x90000 and the high hole written since; 0x2000 zeroed is a hole.
  EXPECT_EQ(stats->memory_data_bytes, 5u * 4096);
  auto second = Snapshot::open(scratch.path() + "/second");
  ASSERT_TRUE(second.ok());
  auto copied = GuestMemory::create(region_specs(second->header().regions));
  ASSERT_TRUE(copied.ok());
  ASSERT_TRUE(read_memory_image(second->memory_fd(), *copied).ok());
  expect_same_ram(*mapped, *copied);
}

TEST(SnapshotFilesTest, RefusesDamagedFiles) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/snap";
  GuestMemory memory = sample_memory(1);
  ASSERT_TRUE(write_snapshot(dir, sample_contents("A"), memory).ok());
  const std::string copy = scratch.path() + "/copy";

  struct Damage {
    const char* file;
    std::function<void(const std::string&)> apply;
    const char* says;
  };
  const std::vector<Damage> damages = {
      {kStateFile, [](const std::string& p) { fs::resize_file(p, fs::file_size(p) - 1); }, "truncated"},
      {kMemoryFile, [](const std::string& p) { fs::resize_file(p, fs::file_size(p) - 4096); }, "memory file"},
      {kHeaderFile, [](const std::string& p) { fs::remove(p); }, "no header"},
      {kStateFile,
       [](const std::string& p) {
         std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
         f.seekp(12);
         f.put('X');
       },
       "checksum"},
  };
  for (const Damage& damage : damages) {
    fs::remove_all(copy);
    fs::copy(dir, copy);
    fs::permissions(copy + "/" + damage.file, fs::perms::owner_write, fs::perm_options::add);
    damage.apply(copy + "/" + damage.file);
    auto opened = Snapshot::open(copy);
    ASSERT_FALSE(opened.ok()) << damage.says;
    EXPECT_NE(opened.error().message().find(damage.says), std::string::npos) << opened.error().message();
  }
}

void flip_byte(const std::string& path, uint64_t offset) {
  fs::permissions(path, fs::perms::owner_write, fs::perm_options::add);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  uint8_t byte = 0;
  ASSERT_EQ(::pread(fd.get(), &byte, 1, static_cast<off_t>(offset)), 1);
  byte ^= 0x10;
  ASSERT_EQ(::pwrite(fd.get(), &byte, 1, static_cast<off_t>(offset)), 1);
}

// The memory file is 4 MiB: chunk 0 is file bytes 0-2 MiB (guest 0-1 MiB
// and the first MiB of the high region), chunk 1 the rest of the high region.
TEST(SnapshotFilesTest, AFlippedByteInTheMemoryFileIsNamedByItsChunk) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/snap";
  GuestMemory memory = sample_memory(5);
  ASSERT_TRUE(write_snapshot(dir, sample_contents("A"), memory).ok());
  {
    auto snapshot = Snapshot::open(dir);
    ASSERT_TRUE(snapshot.ok()) << snapshot.error().message();
    EXPECT_EQ(snapshot->header().format_version, kFormatVersion);
    EXPECT_TRUE(snapshot->has_memory_checksums());
    EXPECT_EQ(snapshot->header().memory_crcs.size(), 2u);
    auto verified = snapshot->verify_memory();
    EXPECT_TRUE(verified.ok()) << verified.error().message();
  }
  struct Case {
    uint64_t offset;  // in the memory file
    const char* says;
  };
  // A byte of data, and a byte of a hole (a page the guest never wrote).
  for (const Case& c : {Case{(3 << 20) + 10,
                             "chunk 1 (file bytes 2097152-4194303, guest-physical "
                             "0x100100000-0x1002fffff)"},
                        Case{0x90005,
                             "chunk 0 (file bytes 0-2097151, guest-physical 0x0-0xfffff and "
                             "0x100000000-0x1000fffff)"}}) {
    const std::string copy = scratch.path() + "/copy";
    fs::remove_all(copy);
    fs::copy(dir, copy);
    flip_byte(copy + "/" + kMemoryFile, c.offset);
    auto snapshot = Snapshot::open(copy);  // its size is right: open does not read it
    ASSERT_TRUE(snapshot.ok()) << snapshot.error().message();
    auto verified = snapshot->verify_memory();
    ASSERT_FALSE(verified.ok()) << c.says;
    EXPECT_NE(verified.error().message().find(c.says), std::string::npos) << verified.error().message();
    EXPECT_NE(verified.error().message().find("does not match its checksum"), std::string::npos);
    // A copy restore reads the same bytes, and sums them as it goes.
    auto copied = GuestMemory::create(region_specs(snapshot->header().regions));
    ASSERT_TRUE(copied.ok());
    MemoryChecksummer sums(snapshot->header().memory_file_size, snapshot->header().memory_chunk_size);
    ASSERT_TRUE(read_memory_image(snapshot->memory_fd(), *copied, &sums).ok());
    auto checked = check_memory_checksums(snapshot->header(), sums.finish());
    ASSERT_FALSE(checked.ok());
    EXPECT_NE(checked.error().message().find(c.says), std::string::npos) << checked.error().message();
  }
}

TEST(SnapshotFilesTest, ATruncatedMemoryFileIsRefusedClearly) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/snap";
  GuestMemory memory = sample_memory(5);
  ASSERT_TRUE(write_snapshot(dir, sample_contents("A"), memory).ok());
  auto snapshot = Snapshot::open(dir);
  ASSERT_TRUE(snapshot.ok());
  const std::string path = dir + "/" + kMemoryFile;
  fs::permissions(path, fs::perms::owner_write, fs::perm_options::add);
  fs::resize_file(path, (3 << 20) + 4096);
  auto verified = snapshot->verify_memory();
  ASSERT_FALSE(verified.ok());
  EXPECT_NE(verified.error().message().find("the memory file holds 3149824 bytes, the header says 4194304 (truncated)"),
            std::string::npos)
      << verified.error().message();
  auto reopened = Snapshot::open(dir);
  ASSERT_FALSE(reopened.ok());
  EXPECT_NE(reopened.error().message().find("the memory file holds 3149824 bytes"), std::string::npos)
      << reopened.error().message();
}

TEST(SnapshotFilesTest, ReplacesAnOlderSnapshotOfTheSameName) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/snap";
  GuestMemory first = sample_memory(1), second = sample_memory(2);
  ASSERT_TRUE(write_snapshot(dir, sample_contents("A"), first).ok());
  ASSERT_TRUE(write_snapshot(dir, sample_contents("B"), second).ok());
  auto snapshot = Snapshot::open(dir);
  ASSERT_TRUE(snapshot.ok()) << snapshot.error().message();
  EXPECT_EQ(snapshot->records(), sample_contents("B").records);
  for (const auto& entry : fs::directory_iterator(scratch.path()))
    EXPECT_EQ(entry.path().filename(), "snap") << "left behind: " << entry.path();
}

TEST(SnapshotFilesTest, RefusesToReplaceADirectoryThatIsNoSnapshot) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/precious";
  fs::create_directory(dir);
  std::ofstream(dir + "/thesis.txt") << "do not delete";
  GuestMemory memory = sample_memory(1);
  auto written = write_snapshot(dir, sample_contents("A"), memory);
  ASSERT_FALSE(written.ok());
  EXPECT_TRUE(fs::exists(dir + "/thesis.txt"));
}

// A crash mid-save (the writer's process dies after `crash_after` bytes)
// leaves the previous snapshot of that name whole.
TEST(SnapshotFilesTest, CrashMidSaveLeavesThePreviousSnapshotRestorable) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/snap";
  GuestMemory first = sample_memory(1);
  ASSERT_TRUE(write_snapshot(dir, sample_contents("A"), first).ok());

  // Crash points: in the memory file, after the state file, after the header
  // (before the directory takes the name).
  for (uint64_t crash_after : {uint64_t{1}, uint64_t{3 * 4096}, uint64_t{4 * 4096 + 1}, uint64_t{1 << 20}}) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      GuestMemory second = sample_memory(2);
      auto crash = [crash_after](uint64_t written) {
        if (written >= crash_after) ::_exit(42);
      };
      (void)write_snapshot(dir, sample_contents("B"), second, crash);
      ::_exit(0);  // finished without crashing
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    auto snapshot = Snapshot::open(dir);
    ASSERT_TRUE(snapshot.ok()) << snapshot.error().message();
    if (WEXITSTATUS(status) == 42) {
      EXPECT_EQ(snapshot->records(), sample_contents("A").records) << crash_after;
      auto mapped =
          GuestMemory::map_private(region_specs(snapshot->header().regions), UniqueFd(::dup(snapshot->memory_fd())));
      ASSERT_TRUE(mapped.ok());
      expect_same_ram(first, *mapped);
    } else {
      // The crash point lay beyond what a save writes: the new one is whole.
      EXPECT_EQ(WEXITSTATUS(status), 0);
      EXPECT_EQ(crash_after, uint64_t{1 << 20});
      EXPECT_EQ(snapshot->records(), sample_contents("B").records);
    }
  }
}

std::vector<std::string> temp_dirs_beside(const std::string& parent, const std::string& name) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(parent))
    if (entry.path().filename().string().rfind(temp_dir_prefix(name), 0) == 0)
      found.push_back(entry.path().filename().string());
  return found;
}

// The temporary directories of saves that crashed carry their writer's pid:
// the next save of that name removes those whose process is gone, and
// leaves alone one whose writer still runs, and anything else.
TEST(SnapshotFilesTest, TheNextSaveRemovesTheTemporaryDirectoriesOfCrashedSaves) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/snap";
  std::vector<std::string> left;
  for (int crash = 0; crash < 2; ++crash) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      GuestMemory memory = sample_memory(2);
      (void)write_snapshot(dir, sample_contents("B"), memory, [](uint64_t) { ::_exit(42); });
      ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42);
    // Each crashed save left its own directory, and removed the one before.
    const std::vector<std::string> now = temp_dirs_beside(scratch.path(), "snap");
    ASSERT_EQ(now.size(), 1u);
    EXPECT_NE(now, left);
    EXPECT_NE(now[0].find("-" + std::to_string(child) + "-"), std::string::npos) << now[0];
    left = now;
  }
  EXPECT_FALSE(Snapshot::open(dir).ok()) << "a crashed save left something that looks like a snapshot";
  // A save in progress in a live process (this one's parent stands in), and
  // a directory of another snapshot's name.
  const std::string live = scratch.path() + "/" + temp_dir_prefix("snap") + std::to_string(::getppid()) + "-abcdef";
  const std::string other = scratch.path() + "/" + temp_dir_prefix("other") + "999999999-abcdef";
  fs::create_directory(live);
  fs::create_directory(other);

  GuestMemory memory = sample_memory(1);
  ASSERT_TRUE(write_snapshot(dir, sample_contents("A"), memory).ok());
  EXPECT_EQ(temp_dirs_beside(scratch.path(), "snap"), (std::vector<std::string>{fs::path(live).filename().string()}));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(Snapshot::open(dir).ok());
}

// A save whose last step (the VM moving onto the frozen images) fails is
// withdrawn: the previous snapshot keeps its name, or there is none, and no
// temporary directory remains.
TEST(SnapshotFilesTest, AFailureOncePublishedWithdrawsTheNewSnapshot) {
  ScratchDir scratch;
  const std::string dir = scratch.path() + "/snap";
  auto failing = [](const std::string& name) {
    SnapshotContents contents = sample_contents(name);
    contents.on_published = [](const std::string& final_dir) -> Result<void> {
      EXPECT_TRUE(fs::exists(final_dir + "/" + kHeaderFile));  // it had its name
      return Error(ErrorCode::kIo, "the overlay could not be created");
    };
    return contents;
  };
  GuestMemory memory = sample_memory(1);
  auto first = write_snapshot(dir, failing("A"), memory);
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.error().message().find("the overlay could not be created"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(temp_dirs_beside(scratch.path(), "snap").empty());

  ASSERT_TRUE(write_snapshot(dir, sample_contents("A"), memory).ok());
  GuestMemory other = sample_memory(2);
  ASSERT_FALSE(write_snapshot(dir, failing("B"), other).ok());
  auto kept = Snapshot::open(dir);
  ASSERT_TRUE(kept.ok()) << kept.error().message();
  EXPECT_EQ(kept->records(), sample_contents("A").records);
  EXPECT_TRUE(temp_dirs_beside(scratch.path(), "snap").empty());
}

// The disk filling up mid-save (a tmpfs too small for the second snapshot,
// mounted in a mount namespace of the test's own) is a clear error, and the
// snapshot of that name stays whole, with no temporary directory left.
TEST(SnapshotFilesTest, ADiskThatFillsUpMidSaveLeavesThePreviousSnapshotWhole) {
  ScratchDir scratch;
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Unprivileged, a user namespace gives the right to mount a tmpfs.
    if (::unshare(CLONE_NEWNS | (uid == 0 ? 0 : CLONE_NEWUSER)) != 0) ::_exit(90);
    if (uid != 0) {
      std::ofstream("/proc/self/setgroups") << "deny";
      std::ofstream("/proc/self/uid_map") << "0 " << uid << " 1";
      std::ofstream("/proc/self/gid_map") << "0 " << gid << " 1";
    }
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(91);
    if (::mount("tmpfs", scratch.path().c_str(), "tmpfs", 0, "size=128k") != 0) ::_exit(92);
    const std::string dir = scratch.path() + "/snap";
    GuestMemory first = sample_memory(1);  // four pages of data: fits
    if (!write_snapshot(dir, sample_contents("A"), first).ok()) ::_exit(93);
    auto big = GuestMemory::create({{GuestAddress(0), 2 << 20}});
    if (!big.ok() || !big->fill(GuestAddress(0), 0x5a, 1 << 20).ok()) ::_exit(94);
    auto second = write_snapshot(dir, sample_contents("B"), *big);
    EXPECT_FALSE(second.ok());
    if (!second.ok())
      EXPECT_NE(second.error().message().find(std::strerror(ENOSPC)), std::string::npos) << second.error().message();
    auto kept = Snapshot::open(dir);
    EXPECT_TRUE(kept.ok()) << (kept.ok() ? "" : kept.error().message());
    if (kept.ok()) EXPECT_EQ(kept->records(), sample_contents("A").records);
    EXPECT_TRUE(temp_dirs_beside(scratch.path(), "snap").empty());
    ::_exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_LT(WEXITSTATUS(status), 90) << "set-up step " << WEXITSTATUS(status)
                                     << " failed (90 unshare, 91 private mounts, 92 tmpfs, 93 first save, 94 RAM)";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "see the child's failures above";
}

}  // namespace
}  // namespace hostvisor::snapshot
