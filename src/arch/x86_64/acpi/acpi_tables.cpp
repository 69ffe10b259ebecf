#include "arch/x86_64/acpi/acpi_tables.h"

#include <algorithm>
#include <cstring>

#include "arch/x86_64/acpi/table_loader.h"

namespace hostvisor::acpi {

namespace {

constexpr char kOemId[] = "HSTVSR";          // 6 characters
constexpr char kOemTableId[] = "HVMACHIN";   // 8 characters
constexpr uint32_t kCreatorId = 0x56545348;  // "HSTV"

void put8(Bytes& b, size_t at, uint8_t v) { b[at] = v; }
void put16(Bytes& b, size_t at, uint16_t v) { std::memcpy(&b[at], &v, 2); }
void put32(Bytes& b, size_t at, uint32_t v) { std::memcpy(&b[at], &v, 4); }
void put64(Bytes& b, size_t at, uint64_t v) { std::memcpy(&b[at], &v, 8); }

// ACPI Generic Address Structure (12 bytes) for a system-I/O register.
void put_gas_io(Bytes& b, size_t at, uint16_t port, uint8_t bit_width, uint8_t access_size) {
  b[at] = 1;  // system I/O space
  b[at + 1] = bit_width;
  b[at + 2] = 0;            // bit offset
  b[at + 3] = access_size;  // 1 byte, 2 word, 3 dword
  put64(b, at + 4, port);
}

// A table with its standard 36-byte header; the checksum is set by finish().
Bytes table(const char signature[4], size_t length, uint8_t revision) {
  Bytes t(length, 0);
  std::memcpy(&t[0], signature, 4);
  put32(t, 4, static_cast<uint32_t>(length));
  t[8] = revision;
  std::memcpy(&t[10], kOemId, 6);
  std::memcpy(&t[16], kOemTableId, 8);
  put32(t, 24, 1);  // OEM revision
  put32(t, 28, kCreatorId);
  put32(t, 32, 1);  // creator revision
  return t;
}

void finish(Bytes& t) {
  put32(t, 4, static_cast<uint32_t>(t.size()));
  t[9] = 0;
  t[9] = acpi_checksum(t.data(), t.size());
}

Bytes build_facs() {
  Bytes f(64, 0);
  std::memcpy(&f[0], "FACS", 4);
  put32(f, 4, 64);
  f[32] = 2;  // version
  return f;
}

Bytes build_fadt(const PlatformDescription& p, uint64_t facs, uint64_t dsdt) {
  Bytes t = table("FACP", 276, 6);
  const PmBlock& pm = p.pm;
  put32(t, kFadtFacsOffset, static_cast<uint32_t>(facs));
  put32(t, kFadtDsdtOffset, static_cast<uint32_t>(dsdt));
  put8(t, 45, 0);  // preferred PM profile: unspecified
  put16(t, 46, pm.sci_irq);
  put32(t, 48, 0);  // SMI_CMD 0: no SMM, ACPI is always enabled
  put32(t, 56, pm.event_port);
  put32(t, 64, pm.control_port);
  put32(t, 76, pm.timer_port);
  put32(t, 80, pm.gpe0_port);
  put8(t, 88, 4);      // PM1_EVT_LEN
  put8(t, 89, 2);      // PM1_CNT_LEN
  put8(t, 91, 4);      // PM_TMR_LEN
  put8(t, 92, 4);      // GPE0_BLK_LEN
  put16(t, 96, 101);   // P_LVL2_LAT > 100: C2 not supported
  put16(t, 98, 1001);  // P_LVL3_LAT > 1000: C3 not supported
  put8(t, 108, p.rtc ? p.rtc_century_index : 0);
  // IAPC_BOOT_ARCH: legacy devices, 8042 present, no VGA, PCIe ASPM controls off.
  put16(t, 109, (1u << 0) | (1u << 1) | (1u << 2) | (1u << 4));
  // Flags: WBINVD, C1 supported, sleep button absent, RTC wake in fixed
  // registers not used, 32-bit PM timer, reset register supported.
  put32(t, 112, (1u << 0) | (1u << 2) | (1u << 5) | (1u << 8) | (1u << 10));
  put_gas_io(t, 116, pm.reset_port, 8, 1);
  put8(t, 128, PmBlock::kResetValue);
  put8(t, 131, 5);  // FADT minor version (6.5)
  put64(t, kFadtXFacsOffset, facs);
  put64(t, kFadtXDsdtOffset, dsdt);
  put_gas_io(t, 148, pm.event_port, 32, 2);
  put_gas_io(t, 172, pm.control_port, 16, 2);
  put_gas_io(t, 208, pm.timer_port, 32, 3);
  put_gas_io(t, 220, pm.gpe0_port, 32, 1);
  std::memcpy(&t[268], "HOSTVISR", 8);  // hypervisor vendor identity
  finish(t);
  return t;
}

Bytes build_madt(const PlatformDescription& p) {
  Bytes t = table("APIC", 44, 5);
  put32(t, 36, static_cast<uint32_t>(p.lapic_address));
  put32(t, 40, 1);  // PCAT_COMPAT: dual 8259s present
  auto add = [&](std::initializer_list<uint8_t> bytes) { t.insert(t.end(), bytes.begin(), bytes.end()); };
  for (unsigned i = 0; i < p.cpu_count; ++i)  // processor local APIC: uid, APIC id, enabled
    add({0, 8, static_cast<uint8_t>(i), static_cast<uint8_t>(i), 1, 0, 0, 0});
  const uint32_t io = static_cast<uint32_t>(p.ioapic_address);
  add({1, 12, p.ioapic_id, 0, static_cast<uint8_t>(io), static_cast<uint8_t>(io >> 8), static_cast<uint8_t>(io >> 16),
       static_cast<uint8_t>(io >> 24), 0, 0, 0, 0});
  if (p.irq0_to_gsi2) add({2, 10, 0, 0, 2, 0, 0, 0, 0, 0});  // ISA IRQ0 -> GSI 2, bus defaults
  // The SCI is level-triggered, active high.
  add({2, 10, 0, p.pm.sci_irq, p.pm.sci_irq, 0, 0, 0, 0x0d, 0});
  add({4, 6, 0xff, 0, 0, 1});  // LINT1 is NMI on every processor
  finish(t);
  return t;
}

Bytes build_mcfg(const PlatformDescription& p) {
  Bytes t = table("MCFG", 44 + 16, 1);
  put64(t, 44, p.ecam_base);
  put16(t, 52, 0);  // segment group
  put8(t, 54, 0);   // first bus
  put8(t, 55, p.ecam_last_bus);
  finish(t);
  return t;
}

Bytes build_xsdt(const std::vector<uint64_t>& entries) {
  Bytes t = table("XSDT", 36 + 8 * entries.size(), 1);
  for (size_t i = 0; i < entries.size(); ++i) put64(t, 36 + 8 * i, entries[i]);
  finish(t);
  return t;
}

Bytes build_rsdp(uint64_t xsdt) {
  Bytes r(36, 0);
  std::memcpy(&r[0], "RSD PTR ", 8);
  std::memcpy(&r[9], kOemId, 6);
  r[15] = 2;        // ACPI 2.0+ RSDP
  put32(r, 16, 0);  // no RSDT: every guest we target reads the XSDT
  put32(r, 20, 36);
  put64(r, kRsdpXsdtOffset, xsdt);
  r[8] = acpi_checksum(r.data(), 20);
  r[32] = acpi_checksum(r.data(), 36);
  return r;
}

}  // namespace

uint8_t acpi_checksum(const uint8_t* data, size_t length) {
  uint8_t sum = 0;
  for (size_t i = 0; i < length; ++i) sum = static_cast<uint8_t>(sum + data[i]);
  return static_cast<uint8_t>(-sum);
}

Bytes build_dsdt_aml(const PlatformDescription& p) {
  using namespace aml;
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::vector<Bytes> routes;
  for (const auto& r : p.pci_routes)
    routes.push_back(
        package({integer((static_cast<uint64_t>(r.slot) << 16) | 0xffff), integer(r.pin), integer(0), integer(r.gsi)}));
  ResourceTemplate bridge;
  bridge.bus_numbers(0, p.ecam_last_bus).io_range(0x0000, 0x0cf7).io_range(0x0d00, 0xffff);
  bridge.memory32(p.pci_mmio32_start, p.pci_mmio32_end);
  if (p.pci_mmio64_end > p.pci_mmio64_start) bridge.memory64(p.pci_mmio64_start, p.pci_mmio64_end);

  std::vector<Bytes> sb;
  std::vector<Bytes> pci0 = {name("_HID", eisa_id("PNP0A08")), name("_CID", eisa_id("PNP0A03")),
                             name("_ADR", integer(0)),         name("_UID", integer(0)),
                             name("_SEG", integer(0)),         name("_BBN", integer(0)),
                             name("_CRS", bridge.build())};
  if (!routes.empty()) pci0.push_back(name("_PRT", package(routes)));
  sb.push_back(device("PCI0", pci0));
  if (p.com1)
    sb.push_back(device("COM1", {name("_HID", eisa_id("PNP0501")), name("_UID", integer(1)),
                                 name("_CRS", ResourceTemplate().io(0x3f8, 8).irq(4).build())}));
  if (p.rtc)
    sb.push_back(
        device("RTC", {name("_HID", eisa_id("PNP0B00")), name("_CRS", ResourceTemplate().io(0x70, 2).irq(8).build())}));

  for (size_t i = 0; i < p.virtio_mmio.size(); ++i) {
    const VirtioMmioDescription& v = p.virtio_mmio[i];
    const std::string device_name = std::string("VR") + kHex[(i >> 4) & 0xf] + kHex[i & 0xf];
    sb.push_back(device(device_name, {name("_HID", string("LNRO0005")), name("_UID", integer(i)),
                                      name("_CRS", ResourceTemplate()
                                                       .memory32_fixed(v.base, v.size)
                                                       .interrupt(v.gsi, /*level_triggered=*/true, /*active_low=*/false)
                                                       .build())}));
  }

  if (p.vmgenid.address != 0) {
    const uint64_t at = p.vmgenid.address;
    sb.push_back(device("VGEN", {name("_HID", string("HSTV0001")),
                                 name("_CID", string(VmGenIdDescription::kCompatibleId)),
                                 name("_DDN", string("VM_Gen_Counter")), name("_UID", integer(0)),
                                 method_returning("ADDR", package({integer(at & 0xffffffff), integer(at >> 32)}))}));
  }

  Bytes body = scope("\\_SB", sb);
  if (p.vmgenid.address != 0) {
    // An edge-triggered GPE: ACPICA clears its status, then runs the method.
    const std::string event = std::string("_E") + kHex[p.vmgenid.gpe >> 4] + kHex[p.vmgenid.gpe & 0xf];
    Bytes gpe = scope("\\_GPE", {method(event, {notify("\\_SB.VGEN", VmGenIdDescription::kNotifyValue)})});
    body.insert(body.end(), gpe.begin(), gpe.end());
  }
  // \_S5: soft-off sleep type for PM1a_CNT.SLP_TYP (and PM1b, unused).
  Bytes s5 =
      name("\\_S5", package({integer(PmBlock::kS5SleepType), integer(PmBlock::kS5SleepType), integer(0), integer(0)}));
  body.insert(body.end(), s5.begin(), s5.end());
  return body;
}

namespace {

// Where place_tables() put each table, as addresses (base + offset).
struct PlacedTables {
  uint64_t facs = 0, dsdt = 0, fadt = 0, madt = 0, mcfg = 0, xsdt = 0;
};

Result<void> check_platform(const PlatformDescription& p) {
  if (p.cpu_count == 0 || p.cpu_count > 255)
    return Error(ErrorCode::kInvalidArgument, "ACPI MADT: 1 to 255 processors supported");
  if (p.virtio_mmio.size() > 256)
    return Error(ErrorCode::kInvalidArgument, "ACPI DSDT: at most 256 virtio-mmio devices can be named");
  if (p.vmgenid.address % 8 != 0 || p.vmgenid.gpe >= 16)
    return Error(ErrorCode::kInvalidArgument, "ACPI DSDT: the VM generation ID needs an 8-byte aligned address and "
                                              "a GPE0 bit below 16");
  return {};
}

// Appends FACS, DSDT, FADT, MADT, MCFG and XSDT to `blob`, whose byte 0 is
// at `base`, with every pointer between them an address from `base`.
PlacedTables place_tables(const PlatformDescription& p, uint64_t base, Bytes& blob) {
  auto place = [&](const Bytes& t, size_t align) {
    while (blob.size() % align) blob.push_back(0);
    const uint64_t at = base + blob.size();
    blob.insert(blob.end(), t.begin(), t.end());
    return at;
  };
  PlacedTables placed;
  placed.facs = place(build_facs(), 64);
  Bytes dsdt = table("DSDT", 36, 2);
  Bytes aml = build_dsdt_aml(p);
  dsdt.insert(dsdt.end(), aml.begin(), aml.end());
  finish(dsdt);
  placed.dsdt = place(dsdt, 16);
  placed.fadt = place(build_fadt(p, placed.facs, placed.dsdt), 16);
  placed.madt = place(build_madt(p), 16);
  placed.mcfg = place(build_mcfg(p), 16);
  placed.xsdt = place(build_xsdt({placed.fadt, placed.madt, placed.mcfg}), 16);
  return placed;
}

uint32_t table_length(const Bytes& blob, uint64_t offset) {
  uint32_t length;
  std::memcpy(&length, blob.data() + offset + 4, 4);
  return length;
}

}  // namespace

Result<AcpiTables> build_acpi_tables(const PlatformDescription& p, uint64_t base, uint64_t max_size) {
  if (base % 16 != 0) return Error(ErrorCode::kInvalidArgument, "ACPI tables must start 16-byte aligned");
  HV_TRY(check_platform(p));

  AcpiTables out;
  out.base = base;
  Bytes& blob = out.blob;
  // The RSDP goes first (its XSDT address is patched in at the end).
  blob.resize(36, 0);
  const PlacedTables placed = place_tables(p, base, blob);
  Bytes rsdp = build_rsdp(placed.xsdt);
  std::copy(rsdp.begin(), rsdp.end(), blob.begin());
  out.rsdp_address = base;
  if (blob.size() > max_size)
    return Error(ErrorCode::kOutOfRange, "ACPI tables need " + std::to_string(blob.size()) + " bytes, only " +
                                             std::to_string(max_size) + " reserved");
  return out;
}

Result<FirmwareAcpiTables> build_firmware_acpi_tables(const PlatformDescription& platform) {
  HV_TRY(check_platform(platform));
  PlatformDescription p = platform;
  p.vmgenid = {};  // see PlatformDescription::vmgenid
  FirmwareAcpiTables out;
  // Built at address 0, every pointer is an offset into the tables file:
  // the loader adds the address the firmware put the file at.
  const PlacedTables placed = place_tables(p, 0, out.tables);
  out.rsdp = build_rsdp(placed.xsdt);

  TableLoader loader;
  loader.allocate(kFirmwareRsdpFile, 16, TableLoader::Zone::kFSeg);
  loader.allocate(kFirmwareTablesFile, 64, TableLoader::Zone::kHigh);
  const auto pointer = [&](uint64_t offset, uint8_t size) {
    loader.add_pointer(kFirmwareTablesFile, kFirmwareTablesFile, static_cast<uint32_t>(offset), size);
  };
  pointer(placed.fadt + kFadtFacsOffset, 4);
  pointer(placed.fadt + kFadtDsdtOffset, 4);
  pointer(placed.fadt + kFadtXFacsOffset, 8);
  pointer(placed.fadt + kFadtXDsdtOffset, 8);
  for (unsigned i = 0; i < 3; ++i) pointer(placed.xsdt + 36 + 8 * i, 8);
  for (const uint64_t t : {placed.dsdt, placed.fadt, placed.madt, placed.mcfg, placed.xsdt})
    loader.add_checksum(kFirmwareTablesFile, static_cast<uint32_t>(t + 9), static_cast<uint32_t>(t),
                        table_length(out.tables, t));
  loader.add_pointer(kFirmwareRsdpFile, kFirmwareTablesFile, kRsdpXsdtOffset, 8);
  loader.add_checksum(kFirmwareRsdpFile, 8, 0, 20);   // the ACPI 1.0 part
  loader.add_checksum(kFirmwareRsdpFile, 32, 0, 36);  // the whole RSDP
  // Every byte an ADD_CHECKSUM fills in starts as 0, as in QEMU's files:
  // OVMF stores the negated sum of the range with the byte in it (SeaBIOS
  // subtracts the sum from whatever is there), so a checksum left in place
  // would come out wrong, and OVMF installs no table that does not sum to 0.
  for (const uint64_t t : {placed.dsdt, placed.fadt, placed.madt, placed.mcfg, placed.xsdt}) out.tables[t + 9] = 0;
  out.rsdp[8] = 0;
  out.rsdp[32] = 0;
  out.loader = loader.script();
  return out;
}

}  // namespace hostvisor::acpi
