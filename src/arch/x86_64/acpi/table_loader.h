// The script QEMU's firmware (SeaBIOS, OVMF) runs to install ACPI tables
// handed over as fw_cfg files (etc/table-loader): allocate each file in
// guest memory, patch pointers between them into addresses, and fix the
// checksums the patching broke. Each command is 128 bytes, little-endian.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hostvisor::acpi {

class TableLoader {
 public:
  enum class Zone : uint8_t {
    kHigh = 1,  // anywhere in RAM below 4 GiB
    kFSeg = 2,  // the 0xE0000-0xFFFFF BIOS area, where an RSDP must be found
  };

  static constexpr size_t kCommandSize = 128;
  static constexpr size_t kFileNameSize = 56;

  // Loads `file` into memory of `zone`, aligned to `align` bytes.
  void allocate(const std::string& file, uint32_t align, Zone zone);
  // Adds the address `source` was loaded at to the `size`-byte (1, 2, 4 or
  // 8) little-endian value at `offset` in `destination`.
  void add_pointer(const std::string& destination, const std::string& source, uint32_t offset, uint8_t size);
  // Makes the `length` bytes at `start` in `file` sum to zero by adjusting
  // the byte at `offset`.
  void add_checksum(const std::string& file, uint32_t offset, uint32_t start, uint32_t length);

  const std::vector<uint8_t>& script() const { return script_; }

 private:
  uint8_t* add_command(uint32_t command);
  static void put_name(uint8_t* at, const std::string& name);

  std::vector<uint8_t> script_;
};

}  // namespace hostvisor::acpi
