#include "arch/x86_64/acpi/table_loader.h"

#include <algorithm>
#include <cstring>

namespace hostvisor::acpi {

namespace {

constexpr uint32_t kAllocate = 1, kAddPointer = 2, kAddChecksum = 3;

void put32(uint8_t* at, uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

uint8_t* TableLoader::add_command(uint32_t command) {
  script_.resize(script_.size() + kCommandSize, 0);
  uint8_t* at = script_.data() + script_.size() - kCommandSize;
  put32(at, command);
  return at + 4;
}

void TableLoader::put_name(uint8_t* at, const std::string& name) {
  // Names are ours and short; a longer one is cut, still NUL-terminated.
  std::memcpy(at, name.data(), std::min(name.size(), kFileNameSize - 1));
}

void TableLoader::allocate(const std::string& file, uint32_t align, Zone zone) {
  uint8_t* at = add_command(kAllocate);
  put_name(at, file);
  put32(at + kFileNameSize, align);
  at[kFileNameSize + 4] = static_cast<uint8_t>(zone);
}

void TableLoader::add_pointer(const std::string& destination, const std::string& source, uint32_t offset,
                              uint8_t size) {
  uint8_t* at = add_command(kAddPointer);
  put_name(at, destination);
  put_name(at + kFileNameSize, source);
  put32(at + 2 * kFileNameSize, offset);
  at[2 * kFileNameSize + 4] = size;
}

void TableLoader::add_checksum(const std::string& file, uint32_t offset, uint32_t start, uint32_t length) {
  uint8_t* at = add_command(kAddChecksum);
  put_name(at, file);
  put32(at + kFileNameSize, offset);
  put32(at + kFileNameSize + 4, start);
  put32(at + kFileNameSize + 8, length);
}

}  // namespace hostvisor::acpi
