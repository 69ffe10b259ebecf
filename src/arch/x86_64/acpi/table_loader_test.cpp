// Runs etc/table-loader the way firmware does (allocate, add pointers, fix
// checksums) over the fw_cfg files and checks the firmware ends up with the
// very tables direct boot writes.
#include "arch/x86_64/acpi/table_loader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

#include "arch/x86_64/acpi/acpi_tables.h"

namespace hostvisor::acpi {
namespace {

uint32_t le32(const uint8_t* p) { return uint32_t{p[0]} | p[1] << 8 | p[2] << 16 | uint32_t{p[3]} << 24; }

// A firmware's loader: files are placed in one flat "memory" at the
// addresses `placement` gives, which must honour each ALLOCATE's alignment.
struct LoadedFiles {
  std::map<std::string, std::vector<uint8_t>> files;
  std::map<std::string, uint64_t> address;
};

// How a firmware fills in a checksum byte. SeaBIOS subtracts the range's
// sum from whatever the byte holds; OVMF stores the negated sum of the range,
// the byte included, which is right only if the byte was 0 beforehand.
enum class ChecksumStyle { kSeabios, kOvmf };

void run_loader(const std::vector<uint8_t>& script, LoadedFiles& loaded,
                const std::map<std::string, uint64_t>& placement, ChecksumStyle style = ChecksumStyle::kSeabios) {
  ASSERT_EQ(script.size() % TableLoader::kCommandSize, 0u);
  for (size_t at = 0; at < script.size(); at += TableLoader::kCommandSize) {
    const uint8_t* c = script.data() + at;
    const uint8_t* body = c + 4;
    auto name = [](const uint8_t* p) { return std::string(reinterpret_cast<const char*>(p)); };
    switch (le32(c)) {
      case 1: {
        const std::string file = name(body);
        ASSERT_TRUE(loaded.files.count(file)) << "ALLOCATE of unknown file " << file;
        ASSERT_TRUE(placement.count(file));
        const uint32_t align = le32(body + 56);
        EXPECT_EQ(placement.at(file) % align, 0u) << file;
        const uint8_t zone = body[60];
        if (file == kFirmwareRsdpFile) EXPECT_EQ(zone, 2) << "the RSDP must be in the F-segment";
        loaded.address[file] = placement.at(file);
        break;
      }
      case 2: {
        const std::string dest = name(body), src = name(body + 56);
        const uint32_t offset = le32(body + 112);
        const uint8_t size = body[116];
        ASSERT_TRUE(loaded.address.count(dest) && loaded.address.count(src)) << "pointer before ALLOCATE";
        auto& d = loaded.files[dest];
        ASSERT_LE(uint64_t{offset} + size, d.size());
        uint64_t value = 0;
        std::memcpy(&value, d.data() + offset, size);
        EXPECT_LT(value, loaded.files[src].size()) << "a pointer outside its source file";
        value += loaded.address[src];
        std::memcpy(d.data() + offset, &value, size);
        break;
      }
      case 3: {
        const std::string file = name(body);
        const uint32_t offset = le32(body + 56), start = le32(body + 60), length = le32(body + 64);
        auto& d = loaded.files[file];
        ASSERT_LE(uint64_t{start} + length, d.size());
        ASSERT_LT(offset, d.size());
        uint8_t sum = 0;
        for (uint32_t i = 0; i < length; ++i) sum = static_cast<uint8_t>(sum + d[start + i]);
        d[offset] = style == ChecksumStyle::kSeabios ? static_cast<uint8_t>(d[offset] - sum)
                                                     : static_cast<uint8_t>(0 - sum);
        break;
      }
      default: FAIL() << "unknown loader command " << le32(c);
    }
  }
}

PlatformDescription platform() {
  PlatformDescription p;
  p.cpu_count = 3;
  p.pci_routes = {{1, 0, 16}, {2, 1, 18}};
  p.virtio_mmio = {{0xfeb00000, 0x1000, 20}};
  return p;
}

TEST(TableLoader, FirmwareInstallsTheTablesDirectBootWrites) {
  constexpr uint64_t kBase = 0xe0000;
  const AcpiTables direct = *build_acpi_tables(platform(), kBase, 0x20000);
  auto firmware = build_firmware_acpi_tables(platform());
  ASSERT_TRUE(firmware.ok()) << firmware.error().message();
  ASSERT_EQ(firmware->rsdp.size(), 36u);

  // Place the files where direct boot has them: the RSDP at the base, the
  // rest from the first 64-byte boundary after it.
  LoadedFiles loaded;
  loaded.files[kFirmwareRsdpFile] = firmware->rsdp;
  loaded.files[kFirmwareTablesFile] = firmware->tables;
  run_loader(firmware->loader, loaded, {{kFirmwareRsdpFile, kBase}, {kFirmwareTablesFile, kBase + 64}});

  std::vector<uint8_t> installed(64 + loaded.files[kFirmwareTablesFile].size(), 0);
  std::memcpy(installed.data(), loaded.files[kFirmwareRsdpFile].data(), 36);
  std::memcpy(installed.data() + 64, loaded.files[kFirmwareTablesFile].data(),
              loaded.files[kFirmwareTablesFile].size());
  EXPECT_EQ(installed, direct.blob);
}

class TableLoaderPlaced : public ::testing::TestWithParam<ChecksumStyle> {};

// Under both firmwares' checksum rules (OVMF installs none of the tables
// whose checksum is wrong, and then Linux finds no ACPI at all).
TEST_P(TableLoaderPlaced, TablesPlacedElsewhereStillLinkUp) {
  auto firmware = build_firmware_acpi_tables(platform());
  ASSERT_TRUE(firmware.ok());
  LoadedFiles loaded;
  loaded.files[kFirmwareRsdpFile] = firmware->rsdp;
  loaded.files[kFirmwareTablesFile] = firmware->tables;
  constexpr uint64_t kRsdpAt = 0xf5a30, kTablesAt = 0x7ffe0000;
  run_loader(firmware->loader, loaded, {{kFirmwareRsdpFile, kRsdpAt}, {kFirmwareTablesFile, kTablesAt}}, GetParam());
  const auto& rsdp = loaded.files[kFirmwareRsdpFile];
  const auto& tables = loaded.files[kFirmwareTablesFile];
  EXPECT_EQ(acpi_checksum(rsdp.data(), 20), 0);
  EXPECT_EQ(acpi_checksum(rsdp.data(), 36), 0);
  uint64_t xsdt;
  std::memcpy(&xsdt, rsdp.data() + kRsdpXsdtOffset, 8);
  ASSERT_GE(xsdt, kTablesAt);
  const uint8_t* x = tables.data() + (xsdt - kTablesAt);
  ASSERT_EQ(std::string(reinterpret_cast<const char*>(x), 4), "XSDT");
  const uint32_t xsdt_length = le32(x + 4);
  EXPECT_EQ(acpi_checksum(x, xsdt_length), 0);
  std::vector<std::string> signatures;
  for (uint32_t off = 36; off < xsdt_length; off += 8) {
    uint64_t entry;
    std::memcpy(&entry, x + off, 8);
    ASSERT_GE(entry, kTablesAt);
    ASSERT_LT(entry - kTablesAt, tables.size());
    const uint8_t* t = tables.data() + (entry - kTablesAt);
    signatures.emplace_back(reinterpret_cast<const char*>(t), 4);
    EXPECT_EQ(acpi_checksum(t, le32(t + 4)), 0) << signatures.back();
    if (signatures.back() == "FACP") {
      uint64_t x_dsdt;
      std::memcpy(&x_dsdt, t + kFadtXDsdtOffset, 8);
      EXPECT_EQ(le32(t + kFadtDsdtOffset), x_dsdt);
      EXPECT_EQ(std::string(reinterpret_cast<const char*>(tables.data() + (x_dsdt - kTablesAt)), 4), "DSDT");
    }
  }
  EXPECT_EQ(signatures, (std::vector<std::string>{"FACP", "APIC", "MCFG"}));
}

INSTANTIATE_TEST_SUITE_P(BothFirmwares, TableLoaderPlaced, ::testing::Values(ChecksumStyle::kSeabios, ChecksumStyle::kOvmf));

}  // namespace
}  // namespace hostvisor::acpi
