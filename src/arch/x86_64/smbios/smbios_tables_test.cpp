#include "arch/x86_64/smbios/smbios_tables.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>

namespace hostvisor::smbios {
namespace {

uint8_t sum(const uint8_t* p, size_t n) {
  uint8_t s = 0;
  for (size_t i = 0; i < n; ++i) s = static_cast<uint8_t>(s + p[i]);
  return s;
}

struct Parsed {
  uint8_t type, length;
  uint16_t handle;
  std::vector<uint8_t> formatted;
  std::vector<std::string> strings;
};

// Walks the structures as dmidecode does; fails the test on a malformed one.
std::vector<Parsed> walk(const std::vector<uint8_t>& t) {
  std::vector<Parsed> out;
  size_t at = 0;
  while (at < t.size()) {
    EXPECT_LE(at + 4, t.size());
    if (at + 4 > t.size()) break;
    Parsed p{t[at], t[at + 1], static_cast<uint16_t>(t[at + 2] | t[at + 3] << 8), {}, {}};
    EXPECT_LE(at + p.length, t.size());
    p.formatted.assign(t.begin() + at, t.begin() + at + p.length);
    size_t s = at + p.length;
    // Strings until a double NUL (a structure without strings has just the two NULs).
    if (s + 1 < t.size() && t[s] == 0 && t[s + 1] == 0) {
      s += 2;
    } else {
      while (s < t.size() && t[s] != 0) {
        const std::string str(reinterpret_cast<const char*>(&t[s]));
        p.strings.push_back(str);
        s += str.size() + 1;
      }
      s += 1;
    }
    at = s;
    out.push_back(p);
    if (p.type == 127) break;
  }
  EXPECT_EQ(at, t.size()) << "bytes after the end-of-table structure";
  return out;
}

SystemDescription two_cpus_6g() {
  SystemDescription s;
  s.cpu_count = 2;
  s.layout = *arch::memory_layout(6 * arch::kGiB);
  s.uuid[0] = 0x12;
  s.uuid[15] = 0x34;
  return s;
}

TEST(Smbios, EntryPointChecksumsAndCounts) {
  const SmbiosTables t = build_smbios_tables(two_cpus_6g());
  ASSERT_EQ(t.anchor.size(), 0x1fu);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(t.anchor.data()), 4), "_SM_");
  EXPECT_EQ(sum(t.anchor.data(), t.anchor.size()), 0);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(t.anchor.data() + 0x10), 5), "_DMI_");
  EXPECT_EQ(sum(t.anchor.data() + 0x10, 0x0f), 0);
  EXPECT_EQ(t.anchor[0x16] | t.anchor[0x17] << 8, static_cast<int>(t.tables.size()));
  const auto structures = walk(t.tables);
  EXPECT_EQ(t.anchor[0x1c] | t.anchor[0x1d] << 8, static_cast<int>(structures.size()));
  size_t largest = 0;
  for (size_t i = 0; i < structures.size(); ++i) {
    size_t size = structures[i].length;
    for (const auto& s : structures[i].strings) size += s.size() + 1;
    size += structures[i].strings.empty() ? 2 : 1;
    largest = std::max(largest, size);
  }
  EXPECT_EQ(t.anchor[8] | t.anchor[9] << 8, static_cast<int>(largest));
}

TEST(Smbios, TheTypesFirmwareAndGuestsReadWithTheirSpecLengths) {
  const auto structures = walk(build_smbios_tables(two_cpus_6g()).tables);
  std::multimap<uint8_t, Parsed> by_type;
  std::map<uint16_t, int> handles;
  for (const auto& p : structures) {
    by_type.emplace(p.type, p);
    EXPECT_EQ(++handles[p.handle], 1) << "handle " << p.handle << " used twice";
  }
  const std::map<uint8_t, uint8_t> lengths = {{0, 0x18},  {1, 0x1b},  {3, 0x15},  {4, 0x2a}, {16, 0x17},
                                              {17, 0x28}, {19, 0x1f}, {32, 0x0b}, {127, 4}};
  for (const auto& [type, length] : lengths) {
    ASSERT_TRUE(by_type.count(type)) << "no type " << int(type);
    for (auto [it, end] = by_type.equal_range(type); it != end; ++it)
      EXPECT_EQ(it->second.length, length) << "type " << int(type);
  }
  EXPECT_EQ(by_type.count(4), 2u) << "one processor structure per CPU";
  EXPECT_EQ(by_type.count(19), 2u) << "one mapped range below 4 GiB, one above";
  EXPECT_EQ(structures.back().type, 127);

  const Parsed& system = by_type.find(1)->second;
  EXPECT_EQ(system.formatted[8], 0x12);
  EXPECT_EQ(system.formatted[23], 0x34);
  EXPECT_EQ(system.strings.at(system.formatted[4] - 1), "hostvisor");

  // 6 GiB in the memory device (MiB) and the array (KiB).
  const Parsed& device = by_type.find(17)->second;
  EXPECT_EQ(device.formatted[12] | device.formatted[13] << 8, 6144);
  const Parsed& array = by_type.find(16)->second;
  uint32_t kib;
  std::memcpy(&kib, &array.formatted[7], 4);
  EXPECT_EQ(kib, 6u << 20);

  // The high range ends at 4 GiB + the RAM above the hole.
  auto it = by_type.equal_range(19).first;
  ++it;
  uint32_t start_kib, end_kib;
  std::memcpy(&start_kib, &it->second.formatted[4], 4);
  std::memcpy(&end_kib, &it->second.formatted[8], 4);
  const arch::MemoryLayout layout = *arch::memory_layout(6 * arch::kGiB);
  EXPECT_EQ(uint64_t{start_kib} * 1024, arch::kHighRamStart);
  EXPECT_EQ(uint64_t{end_kib} * 1024 + 1024, layout.high_ram_end());
}

TEST(Smbios, ManyCpusStillFitTheSixteenBitLength) {
  SystemDescription s = two_cpus_6g();
  s.cpu_count = 255;
  const SmbiosTables t = build_smbios_tables(s);
  EXPECT_EQ(t.anchor[0x16] | t.anchor[0x17] << 8, static_cast<int>(t.tables.size()));
  EXPECT_EQ(walk(t.tables).size(), 255u + 9u) << "types 0, 1, 3, 16, 17, two 19s, 32 and 127 besides the CPUs";
}

TEST(Smbios, PlacedBlockHasTheTableAddressAndValidChecksums) {
  const SmbiosTables t = build_smbios_tables(two_cpus_6g());
  const std::vector<uint8_t> block = place_smbios_tables(t, 0xf0000);
  ASSERT_EQ(block.size(), 0x20 + t.tables.size());
  EXPECT_EQ(sum(block.data(), 0x1f), 0);
  EXPECT_EQ(sum(block.data() + 0x10, 0x0f), 0);
  uint32_t address;
  std::memcpy(&address, &block[0x18], 4);
  EXPECT_EQ(address, 0xf0020u);
  EXPECT_TRUE(std::equal(t.tables.begin(), t.tables.end(), block.begin() + 0x20));
}

}  // namespace
}  // namespace hostvisor::smbios
