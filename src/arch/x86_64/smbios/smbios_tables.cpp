#include "arch/x86_64/smbios/smbios_tables.h"

#include <algorithm>
#include <initializer_list>

namespace hostvisor::smbios {

namespace {

constexpr uint8_t kMajorVersion = 2, kMinorVersion = 8;
constexpr uint16_t kNoHandle = 0xfffe;  // "not provided"
constexpr uint16_t kNoCache = 0xffff;
// The 2.1-style entry point's fields.
constexpr size_t kChecksumOffset = 0x04, kIntermediateAnchorOffset = 0x10, kIntermediateChecksumOffset = 0x15,
                 kIntermediateLength = 0x0f, kTableAddressOffset = 0x18;

// One structure: its formatted area, then its strings (numbered from 1),
// then the double NUL that ends the set.
class Structure {
 public:
  Structure(uint8_t type, uint16_t handle) {
    bytes_.push_back(type);
    bytes_.push_back(0);  // length, set by finish()
    u16(handle);
  }
  void u8(uint8_t v) { bytes_.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void raw(const uint8_t* data, size_t n) { bytes_.insert(bytes_.end(), data, data + n); }
  // A string field: the string's number, or 0 for none.
  void str(const std::string& s) {
    if (s.empty()) {
      u8(0);
      return;
    }
    strings_.push_back(s);
    u8(static_cast<uint8_t>(strings_.size()));
  }
  std::vector<uint8_t> finish() {
    bytes_[1] = static_cast<uint8_t>(bytes_.size());
    for (const auto& s : strings_) {
      bytes_.insert(bytes_.end(), s.begin(), s.end());
      bytes_.push_back(0);
    }
    if (strings_.empty()) bytes_.push_back(0);
    bytes_.push_back(0);
    return std::move(bytes_);
  }

 private:
  void put(uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> bytes_;
  std::vector<std::string> strings_;
};

uint16_t handle(uint8_t type, unsigned instance) { return static_cast<uint16_t>(type << 8 | instance); }

std::vector<uint8_t> bios_information(const SystemDescription& system) {
  Structure s(0, handle(0, 0));
  s.str("hostvisor");          // vendor
  s.str(system.bios_version);  // version
  s.u16(0xe800);               // starting segment: the last 96 KiB below 1 MiB
  s.str("01/01/2026");         // release date
  s.u8(0);                     // ROM size: 64 KiB
  s.u64(1u << 3);              // characteristics: "not supported" (firmware of a VM)
  s.u8(0);                     // extension byte 1
  s.u8(1u << 4);               // extension byte 2: this is a virtual machine
  s.u8(0), s.u8(0);            // system BIOS release
  s.u8(0xff), s.u8(0xff);      // no embedded controller
  return s.finish();
}

std::vector<uint8_t> system_information(const SystemDescription& system) {
  Structure s(1, handle(1, 0));
  s.str("hostvisor");          // manufacturer
  s.str("Standard PC (Q35)");  // product
  s.str("1.0");                // version
  s.str("");                   // serial number
  s.raw(system.uuid.data(), system.uuid.size());
  s.u8(0x06);                // wake-up type: power switch
  s.str("");                 // SKU
  s.str("Virtual Machine");  // family
  return s.finish();
}

std::vector<uint8_t> chassis() {
  Structure s(3, handle(3, 0));
  s.str("hostvisor");                  // manufacturer
  s.u8(0x01);                          // type: other
  s.str("");                           // version
  s.str("");                           // serial
  s.str("");                           // asset tag
  s.u8(0x03), s.u8(0x03), s.u8(0x03);  // boot-up, power supply, thermal state: safe
  s.u8(0x02);                          // security: unknown
  s.u32(0);                            // OEM
  s.u8(0), s.u8(0);                    // height, power cords
  s.u8(0), s.u8(0);                    // no contained elements
  return s.finish();
}

std::vector<uint8_t> processor(const SystemDescription& system, unsigned index) {
  Structure s(4, handle(4, index));
  s.str("CPU " + std::to_string(index));  // socket
  s.u8(0x03);                             // type: central processor
  s.u8(0xfe);                             // family: see family 2
  s.str("hostvisor");                     // manufacturer
  s.u32(system.cpuid_1_eax), s.u32(system.cpuid_1_edx);
  s.str("");                 // version
  s.u8(0);                   // voltage: unknown
  s.u16(0);                  // external clock: unknown
  s.u16(2000), s.u16(2000);  // max and current speed, MHz (nominal)
  s.u8(0x41);                // socket populated, CPU enabled
  s.u8(0x01);                // upgrade: other
  s.u16(kNoCache), s.u16(kNoCache), s.u16(kNoCache);
  s.str(""), s.str(""), s.str("");  // serial, asset tag, part number
  s.u8(1), s.u8(1), s.u8(1);        // cores, cores enabled, threads
  s.u16(0x02);                      // characteristics: unknown
  s.u16(0x01);                      // family 2: other
  return s.finish();
}

std::vector<uint8_t> memory_array(const SystemDescription& system) {
  Structure s(16, handle(16, 0));
  const uint64_t kib = system.layout.ram_size / 1024;
  s.u8(0x01);  // location: other
  s.u8(0x03);  // use: system memory
  s.u8(0x03);  // error correction: none
  s.u32(kib < 0x80000000u ? static_cast<uint32_t>(kib) : 0x80000000u);
  s.u16(kNoHandle);  // error information
  s.u16(1);          // memory devices
  s.u64(kib < 0x80000000u ? 0 : system.layout.ram_size);
  return s.finish();
}

std::vector<uint8_t> memory_device(const SystemDescription& system) {
  Structure s(17, handle(17, 0));
  const uint64_t mib = system.layout.ram_size >> 20;
  s.u16(handle(16, 0));          // the array
  s.u16(kNoHandle);              // error information
  s.u16(0xffff), s.u16(0xffff);  // total and data width: unknown
  s.u16(mib < 0x7fff ? static_cast<uint16_t>(mib) : 0x7fff);
  s.u8(0x09);  // form factor: DIMM
  s.u8(0);     // not in a set
  s.str("DIMM 0");
  s.str("");                                            // bank
  s.u8(0x07);                                           // type: RAM
  s.u16(0x02);                                          // detail: other
  s.u16(0);                                             // speed: unknown
  s.str("hostvisor"), s.str(""), s.str(""), s.str("");  // manufacturer, serial, asset tag, part
  s.u8(0);                                              // attributes
  s.u32(mib < 0x7fff ? 0 : static_cast<uint32_t>(std::min<uint64_t>(mib, 0x7fffffff)));
  s.u16(0);                      // configured speed
  s.u16(0), s.u16(0), s.u16(0);  // voltages
  return s.finish();
}

std::vector<uint8_t> mapped_range(unsigned index, uint64_t start, uint64_t size) {
  Structure s(19, handle(19, index));
  const uint64_t end = start + size - 1;
  const bool fits = end / 1024 < 0xffffffffu;
  s.u32(fits ? static_cast<uint32_t>(start / 1024) : 0xffffffffu);
  s.u32(fits ? static_cast<uint32_t>(end / 1024) : 0xffffffffu);
  s.u16(handle(16, 0));
  s.u8(1);  // partition width
  s.u64(fits ? 0 : start);
  s.u64(fits ? 0 : end);
  return s.finish();
}

std::vector<uint8_t> boot_information() {
  Structure s(32, handle(32, 0));
  for (int i = 0; i < 6; ++i) s.u8(0);  // reserved
  s.u8(0);                              // no errors detected
  return s.finish();
}

std::vector<uint8_t> end_of_table() { return Structure(127, handle(127, 0)).finish(); }

uint8_t checksum(const uint8_t* data, size_t n) {
  uint8_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum = static_cast<uint8_t>(sum + data[i]);
  return static_cast<uint8_t>(-sum);
}

}  // namespace

SmbiosTables build_smbios_tables(const SystemDescription& system) {
  std::vector<std::vector<uint8_t>> structures;
  structures.push_back(bios_information(system));
  structures.push_back(system_information(system));
  structures.push_back(chassis());
  for (unsigned i = 0; i < system.cpu_count; ++i) structures.push_back(processor(system, i));
  structures.push_back(memory_array(system));
  structures.push_back(memory_device(system));
  unsigned ranges = 0;
  structures.push_back(mapped_range(ranges++, 0, system.layout.low_ram_end));
  if (system.layout.high_ram_size > 0)
    structures.push_back(mapped_range(ranges++, arch::kHighRamStart, system.layout.high_ram_size));
  structures.push_back(boot_information());
  structures.push_back(end_of_table());

  SmbiosTables out;
  size_t largest = 0;
  for (const auto& s : structures) {
    out.tables.insert(out.tables.end(), s.begin(), s.end());
    largest = std::max(largest, s.size());
  }

  // The 2.1-style 31-byte entry point; firmware fills in the table address
  // and redoes both checksums when it places the tables.
  std::vector<uint8_t>& a = out.anchor;
  a = {'_', 'S', 'M', '_', 0, 0x1f, kMajorVersion, kMinorVersion};
  a.push_back(static_cast<uint8_t>(largest)), a.push_back(static_cast<uint8_t>(largest >> 8));
  a.push_back(0);           // entry point revision
  a.insert(a.end(), 5, 0);  // formatted area
  a.insert(a.end(), {'_', 'D', 'M', 'I', '_'});
  a.push_back(0);  // intermediate checksum
  a.push_back(static_cast<uint8_t>(out.tables.size())), a.push_back(static_cast<uint8_t>(out.tables.size() >> 8));
  a.insert(a.end(), 4, 0);  // table address
  a.push_back(static_cast<uint8_t>(structures.size())), a.push_back(static_cast<uint8_t>(structures.size() >> 8));
  a.push_back(kMajorVersion << 4 | kMinorVersion);  // BCD revision
  a[kIntermediateChecksumOffset] = checksum(a.data() + kIntermediateAnchorOffset, kIntermediateLength);
  a[kChecksumOffset] = checksum(a.data(), a.size());
  return out;
}

std::vector<uint8_t> place_smbios_tables(const SmbiosTables& tables, uint32_t address) {
  constexpr size_t kTablesOffset = 0x20;  // the 31-byte entry point, 16-byte aligned after it
  std::vector<uint8_t> block(kTablesOffset, 0);
  std::copy(tables.anchor.begin(), tables.anchor.end(), block.begin());
  block.insert(block.end(), tables.tables.begin(), tables.tables.end());
  const uint32_t at = address + kTablesOffset;
  for (int i = 0; i < 4; ++i) block[kTableAddressOffset + i] = static_cast<uint8_t>(at >> (8 * i));
  block[kIntermediateChecksumOffset] = 0;
  block[kIntermediateChecksumOffset] = checksum(block.data() + kIntermediateAnchorOffset, kIntermediateLength);
  block[kChecksumOffset] = 0;
  block[kChecksumOffset] = checksum(block.data(), tables.anchor.size());
  return block;
}

}  // namespace hostvisor::smbios
