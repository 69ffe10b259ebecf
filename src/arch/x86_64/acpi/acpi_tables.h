// The ACPI tables a PC guest reads to find its CPUs, interrupt controllers,
// PCI host bridge, legacy devices and power-management block: RSDP, XSDT,
// FADT (+FACS), DSDT, MADT and MCFG. Debian's kernel has no MP-table parser,
// so SMP and interrupt routing depend on these.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "arch/x86_64/acpi/aml.h"
#include "base/result.h"

namespace hostvisor::acpi {

// The fixed-feature power-management block in port I/O space (FADT).
struct PmBlock {
  uint16_t event_port = 0x600;    // PM1a_EVT: status (2 bytes) + enable (2 bytes)
  uint16_t control_port = 0x604;  // PM1a_CNT: SLP_TYP/SLP_EN (2 bytes)
  uint16_t reset_port = 0x606;    // RESET_REG (1 byte), reset by writing kResetValue
  uint16_t timer_port = 0x608;    // PM_TMR: 32-bit, 3.579545 MHz
  uint16_t gpe0_port = 0x610;     // GPE0_BLK: status (2) + enable (2)
  uint8_t sci_irq = 9;
  static constexpr uint8_t kResetValue = 0x01;
  static constexpr uint8_t kS5SleepType = 5;  // SLP_TYP for soft-off, as _S5 says
};

// One INTx route of the PCI host bridge: device `slot`, pin 0-3 (INTA-D) → GSI.
struct PciIrqRoute {
  uint8_t slot;
  uint8_t pin;
  uint32_t gsi;
};

// One virtio-mmio transport (virtio 1.2, 4.2): its register block and its
// level-triggered, active-high interrupt. The DSDT describes it as a device
// with _HID "LNRO0005", which Linux's virtio_mmio driver binds to.
struct VirtioMmioDescription {
  uint32_t base;
  uint32_t size;
  uint32_t gsi;
};

// The Virtual Machine Generation ID device (Microsoft's "Virtual Machine
// Generation ID" spec; Linux's vmgenid driver): a device with _CID
// "VM_GEN_COUNTER" whose ADDR method returns the guest-physical address of
// the 16-byte ID as a package of two DWORDs (low, high), and a GPE0 event
// whose _Exx method does Notify(device, 0x80) when the ID changed.
struct VmGenIdDescription {
  uint64_t address = 0;  // 0: no device
  uint8_t gpe = 0;       // the GPE0 bit (0-15: the block has two status bytes)
  static constexpr const char* kCompatibleId = "VM_GEN_COUNTER";
  static constexpr uint8_t kNotifyValue = 0x80;
};

struct PlatformDescription {
  unsigned cpu_count = 1;
  uint64_t lapic_address = 0xfee00000;
  uint64_t ioapic_address = 0xfec00000;
  uint8_t ioapic_id = 0;
  // ISA IRQ 0 (the PIT) arrives on IOAPIC pin 2, as on every PC chipset.
  bool irq0_to_gsi2 = true;
  uint64_t ecam_base = 0xb0000000;
  uint8_t ecam_last_bus = 255;
  uint32_t pci_mmio32_start = 0xc0000000, pci_mmio32_end = 0xfebfffff;  // inclusive
  uint64_t pci_mmio64_start = 0, pci_mmio64_end = 0;                    // none if equal
  std::vector<PciIrqRoute> pci_routes;
  PmBlock pm;
  bool com1 = true;  // 16550 at 0x3f8, IRQ 4
  bool rtc = true;   // CMOS at 0x70, IRQ 8
  uint8_t rtc_century_index = 0x32;
  std::vector<VirtioMmioDescription> virtio_mmio;
  // Direct boot only: firmware would have to place the ID itself (QEMU's
  // etc/vmgenid_guid), so the firmware tables leave the device out.
  VmGenIdDescription vmgenid;
};

struct AcpiTables {
  uint64_t base = 0;          // guest-physical address of blob[0]
  std::vector<uint8_t> blob;  // every table, laid out from `base`
  uint64_t rsdp_address = 0;  // where the guest finds the RSDP
};

// Builds every table for `platform`, to be copied to guest memory at `base`
// (16-byte aligned; the RSDP comes first so a BIOS-area scan finds it when
// base is in 0xE0000-0xFFFFF). Fails if the result exceeds `max_size`.
Result<AcpiTables> build_acpi_tables(const PlatformDescription& platform, uint64_t base, uint64_t max_size);

// The same tables for firmware to install (SeaBIOS, OVMF), as the fw_cfg
// files QEMU uses: the RSDP and the other tables in two files, and the
// loader script (table_loader.h) that places them and links them up.
struct FirmwareAcpiTables {
  Bytes rsdp;    // etc/acpi/rsdp
  Bytes tables;  // etc/acpi/tables; its pointers are offsets into itself
  Bytes loader;  // etc/table-loader
};
inline constexpr const char* kFirmwareRsdpFile = "etc/acpi/rsdp";
inline constexpr const char* kFirmwareTablesFile = "etc/acpi/tables";
Result<FirmwareAcpiTables> build_firmware_acpi_tables(const PlatformDescription& platform);

// Where the pointers are that firmware has to patch.
constexpr uint32_t kFadtFacsOffset = 36, kFadtDsdtOffset = 40, kFadtXFacsOffset = 132, kFadtXDsdtOffset = 140;
constexpr uint32_t kRsdpXsdtOffset = 24;

// The DSDT's AML body (without the table header), for tests.
Bytes build_dsdt_aml(const PlatformDescription& platform);

// The 8-bit checksum that makes a table sum to zero.
uint8_t acpi_checksum(const uint8_t* data, size_t length);

}  // namespace hostvisor::acpi
