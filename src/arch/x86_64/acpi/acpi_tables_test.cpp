#include "arch/x86_64/acpi/acpi_tables.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace hostvisor::acpi {
namespace {

PlatformDescription two_cpu_platform() {
  PlatformDescription p;
  p.cpu_count = 2;
  p.pci_mmio64_start = 0x8000000000ull;
  p.pci_mmio64_end = 0xffffffffffull;
  for (uint8_t slot = 1; slot < 4; ++slot)
    for (uint8_t pin = 0; pin < 4; ++pin) p.pci_routes.push_back({slot, pin, 16u + (slot + pin) % 4u});
  p.virtio_mmio = {{0xfeb00000, 0x200, 20}, {0xfeb01000, 0x200, 21}};
  p.vmgenid = {.address = 0x1234ef008, .gpe = 3};
  return p;
}

struct Table {
  std::string signature;
  uint64_t address;
  const uint8_t* data;
  uint32_t length;
};

uint32_t read32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t read64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Follows RSDP -> XSDT -> tables the way a guest would.
std::vector<Table> walk(const AcpiTables& t) {
  auto at = [&](uint64_t address) { return t.blob.data() + (address - t.base); };
  const uint8_t* rsdp = at(t.rsdp_address);
  EXPECT_EQ(std::memcmp(rsdp, "RSD PTR ", 8), 0);
  EXPECT_EQ(acpi_checksum(rsdp, 20), 0);
  EXPECT_EQ(acpi_checksum(rsdp, 36), 0);
  EXPECT_EQ(rsdp[15], 2);
  std::vector<Table> tables;
  const uint64_t xsdt_address = read64(rsdp + 24);
  const uint8_t* xsdt = at(xsdt_address);
  tables.push_back({"XSDT", xsdt_address, xsdt, read32(xsdt + 4)});
  for (uint32_t off = 36; off < read32(xsdt + 4); off += 8) {
    const uint64_t a = read64(xsdt + off);
    const uint8_t* d = at(a);
    tables.push_back({std::string(reinterpret_cast<const char*>(d), 4), a, d, read32(d + 4)});
    if (tables.back().signature == "FACP") {
      const uint64_t dsdt = read64(d + 140);
      EXPECT_EQ(read32(d + 40), dsdt);
      tables.push_back({"DSDT", dsdt, at(dsdt), read32(at(dsdt) + 4)});
    }
  }
  return tables;
}

TEST(AcpiTables, EveryTableIsReachableWithAValidChecksum) {
  auto t = build_acpi_tables(two_cpu_platform(), 0xe0000, 0x20000);
  ASSERT_TRUE(t.ok()) << t.error().message();
  EXPECT_EQ(t->rsdp_address, 0xe0000u);
  std::vector<std::string> seen;
  for (const auto& table : walk(*t)) {
    seen.push_back(table.signature);
    EXPECT_EQ(acpi_checksum(table.data, table.length), 0) << table.signature;
    EXPECT_LE(table.address - t->base + table.length, t->blob.size()) << table.signature;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"XSDT", "FACP", "DSDT", "APIC", "MCFG"}));
}

TEST(AcpiTables, MadtListsEachCpuTheIoApicAndOverrides) {
  auto t = build_acpi_tables(two_cpu_platform(), 0xe0000, 0x20000);
  ASSERT_TRUE(t.ok());
  const Table* madt = nullptr;
  auto tables = walk(*t);
  for (auto& x : tables)
    if (x.signature == "APIC") madt = &x;
  ASSERT_NE(madt, nullptr);
  EXPECT_EQ(read32(madt->data + 36), 0xfee00000u);
  int cpus = 0, ioapics = 0, overrides = 0, nmis = 0;
  for (uint32_t off = 44; off < madt->length; off += madt->data[off + 1]) {
    ASSERT_GT(madt->data[off + 1], 0);
    switch (madt->data[off]) {
      case 0:
        EXPECT_EQ(madt->data[off + 3], cpus);   // APIC id
        EXPECT_EQ(madt->data[off + 4] & 1, 1);  // enabled
        ++cpus;
        break;
      case 1:
        EXPECT_EQ(read32(madt->data + off + 4), 0xfec00000u);
        EXPECT_EQ(read32(madt->data + off + 8), 0u);  // GSI base
        ++ioapics;
        break;
      case 2:
        if (madt->data[off + 3] == 0) EXPECT_EQ(read32(madt->data + off + 4), 2u);
        ++overrides;
        break;
      case 4: ++nmis; break;
    }
  }
  EXPECT_EQ(cpus, 2);
  EXPECT_EQ(ioapics, 1);
  EXPECT_EQ(overrides, 2);
  EXPECT_EQ(nmis, 1);
}

TEST(AcpiTables, FadtPointsAtThePmBlock) {
  auto t = build_acpi_tables(two_cpu_platform(), 0xe0000, 0x20000);
  ASSERT_TRUE(t.ok());
  for (auto& x : walk(*t)) {
    if (x.signature != "FACP") continue;
    EXPECT_EQ(x.length, 276u);
    EXPECT_EQ(read32(x.data + 56), 0x600u);            // PM1a_EVT_BLK
    EXPECT_EQ(read32(x.data + 64), 0x604u);            // PM1a_CNT_BLK
    EXPECT_EQ(read32(x.data + 76), 0x608u);            // PM_TMR_BLK
    EXPECT_EQ(x.data[46], 9);                          // SCI
    EXPECT_EQ(read64(x.data + 116 + 4), 0x606u);       // RESET_REG address
    EXPECT_NE(read32(x.data + 112) & (1u << 10), 0u);  // RESET_REG_SUP
  }
}

TEST(AcpiTables, FailsWhenTheReservedAreaIsTooSmall) {
  auto t = build_acpi_tables(two_cpu_platform(), 0xe0000, 64);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code(), ErrorCode::kOutOfRange);
  EXPECT_FALSE(build_acpi_tables(two_cpu_platform(), 0xe0001, 0x20000).ok());
  PlatformDescription none = two_cpu_platform();
  none.cpu_count = 0;
  EXPECT_FALSE(build_acpi_tables(none, 0xe0000, 0x20000).ok());
  PlatformDescription misaligned_id = two_cpu_platform();
  misaligned_id.vmgenid.address = 0xef004;
  EXPECT_FALSE(build_acpi_tables(misaligned_id, 0xe0000, 0x20000).ok());
  PlatformDescription no_such_gpe = two_cpu_platform();
  no_such_gpe.vmgenid.gpe = 16;
  EXPECT_FALSE(build_acpi_tables(no_such_gpe, 0xe0000, 0x20000).ok());
}

// Firmware places the tables itself and would have to place the ID too, so
// its copy of the DSDT has no VMGENID device (and no GPE method for it).
TEST(AcpiTables, OnlyDirectBootTablesDescribeTheVmGenerationId) {
  auto has = [](const Bytes& bytes, const std::string& text) {
    return std::search(bytes.begin(), bytes.end(), text.begin(), text.end()) != bytes.end();
  };
  auto direct = build_acpi_tables(two_cpu_platform(), 0xe0000, 0x20000);
  ASSERT_TRUE(direct.ok());
  EXPECT_TRUE(has(direct->blob, "VM_GEN_COUNTER"));
  EXPECT_TRUE(has(direct->blob, "_E03"));
  auto firmware = build_firmware_acpi_tables(two_cpu_platform());
  ASSERT_TRUE(firmware.ok());
  EXPECT_FALSE(has(firmware->tables, "VM_GEN_COUNTER"));
  EXPECT_FALSE(has(firmware->tables, "_E03"));
}

TEST(Aml, EncodesPackageLengthsAndIntegers) {
  EXPECT_EQ(aml::pkg_length(0x3f), (Bytes{0x3f}));
  EXPECT_EQ(aml::pkg_length(0x40), (Bytes{0x40, 0x04}));
  EXPECT_EQ(aml::pkg_length(0x1234), (Bytes{0x84, 0x23, 0x01}));
  EXPECT_EQ(aml::integer(0), (Bytes{0x00}));
  EXPECT_EQ(aml::integer(1), (Bytes{0x01}));
  EXPECT_EQ(aml::integer(0x12), (Bytes{0x0a, 0x12}));
  EXPECT_EQ(aml::integer(0x1234), (Bytes{0x0b, 0x34, 0x12}));
  EXPECT_EQ(aml::eisa_id("PNP0A03"), (Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x03}));
  EXPECT_EQ(aml::name_string("\\_SB.PCI0"), (Bytes{0x5c, 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'}));
}

TEST(Aml, EncodesFixedMemoryAndExtendedInterruptDescriptors) {
  // ACPI 6.5 6.4.3.4 (32-bit fixed memory range) and 6.4.3.6 (extended interrupt).
  const Bytes crs = ResourceTemplate().memory32_fixed(0xfeb01000, 0x200).interrupt(21, true, false).build();
  const Bytes descriptors = {0x86, 9,   0, 0x01, 0x00, 0x10, 0xb0, 0xfe, 0x00, 0x02, 0, 0,  // Memory32Fixed
                             0x89, 6,   0, 0x01, 1,    21,   0,    0,    0,                 // Interrupt
                             0x79, 0x00};                                                   // end tag
  Bytes expected = aml::buffer(descriptors);
  EXPECT_EQ(crs, expected);
  // Edge, active low: flag bits 1 and 2.
  // Buffer op, length, size as a byte integer: the descriptor starts at 4, its flags at 4 + 3.
  EXPECT_EQ(ResourceTemplate().interrupt(5, false, true).build()[4 + 3], 0x07);
}

// Debian's acpica-tools disassembler is the referee: every table must
// disassemble without errors, and the DSDT must show our devices.
std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  if (status != 0) out += "\n<exit status " + std::to_string(status) + ">";
  return out;
}

TEST(AcpiTables, IaslDisassemblesEveryTableCleanly) {
  ASSERT_EQ(::system("command -v iasl >/dev/null"), 0) << "iasl (acpica-tools) is required: run scripts/setup-host.sh";
  auto t = build_acpi_tables(two_cpu_platform(), 0xe0000, 0x20000);
  ASSERT_TRUE(t.ok());
  auto dir = std::filesystem::temp_directory_path() / ("hv-acpi-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const auto& table : walk(*t)) {
    const auto path = dir / (table.signature + ".dat");
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(table.data), table.length);
    std::string out = run("cd " + dir.string() + " && iasl -d " + path.string());
    EXPECT_EQ(out.find("<exit status"), std::string::npos) << table.signature << ":\n" << out;
    EXPECT_EQ(out.find("Error"), std::string::npos) << table.signature << ":\n" << out;
    EXPECT_EQ(out.find("Invalid"), std::string::npos) << table.signature << ":\n" << out;
    std::ifstream dsl(dir / (table.signature + ".dsl"));
    std::stringstream text;
    text << dsl.rdbuf();
    EXPECT_FALSE(text.str().empty()) << table.signature;
    if (table.signature == "DSDT") {
      EXPECT_NE(text.str().find("PNP0A08"), std::string::npos) << text.str();
      EXPECT_NE(text.str().find("Device (COM1)"), std::string::npos) << text.str();
      EXPECT_NE(text.str().find("_S5_"), std::string::npos) << text.str();
      EXPECT_NE(text.str().find("_PRT"), std::string::npos) << text.str();
      // Each virtio-mmio transport with its register block and its level,
      // active-high GSI, as the disassembler reads them back.
      const std::regex virtio_mmio(
          R"(Device \((VR0[01])\)\s*\{\s*Name \(_HID, "LNRO0005"\)[^}]*Name \(_UID, (Zero|One)\)[^}]*)"
          R"(Memory32Fixed \(ReadWrite,\s*0x(FEB0[01]000),\s*// Address Base\s*0x00000200,[^}]*)"
          R"(Interrupt \(ResourceConsumer, Level, ActiveHigh, Exclusive, ,, \)\s*\{\s*0x000000(1[45]),)");
      std::vector<std::string> found;
      const std::string dsdt = text.str();
      for (auto it = std::sregex_iterator(dsdt.begin(), dsdt.end(), virtio_mmio); it != std::sregex_iterator(); ++it)
        found.push_back((*it)[1].str() + " " + (*it)[3].str() + " " + (*it)[4].str());
      EXPECT_EQ(found, (std::vector<std::string>{"VR00 FEB00000 14", "VR01 FEB01000 15"})) << dsdt;
      // VMGENID as Linux's vmgenid driver finds it: the compatible ID, ADDR
      // as (low, high) DWORDs, and the GPE method that notifies the device.
      EXPECT_TRUE(std::regex_search(
          dsdt, std::regex(R"(Device \(VGEN\)\s*\{[^}]*Name \(_CID, "VM_GEN_COUNTER"\)[^}]*Method \(ADDR, 0[^}]*)"
                           R"(Return \(Package \(0x02\)\s*\{\s*0x234EF008,\s*One\s*\}\))")))
          << dsdt;
      EXPECT_TRUE(std::regex_search(
          dsdt, std::regex(R"(Scope \(\\_GPE\)\s*\{\s*Method \(_E03, 0[^}]*\{\s*Notify \(\\_SB\.VGEN, 0x80\))")))
          << dsdt;
    }
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hostvisor::acpi
