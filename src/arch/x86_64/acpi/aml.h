// A small AML (ACPI Machine Language) encoder: enough to describe the
// platform's devices in the DSDT — names, integers, strings, buffers,
// packages, scopes, devices, methods returning constants, and the resource
// descriptors of _CRS. Encodings follow ACPI 6.5 chapter 20 (AML) and
// chapter 6.4 (resource data types).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hostvisor::acpi {

using Bytes = std::vector<uint8_t>;

namespace aml {

// A name segment path such as "_SB_", "\\_SB_.PCI0", "_HID", "COM1".
// Segments shorter than four characters are padded with '_'.
Bytes name_string(const std::string& path);

Bytes integer(uint64_t value);  // shortest of Zero/One/Byte/Word/DWord/QWord
Bytes string(const std::string& text);
Bytes buffer(const Bytes& data);
Bytes package(const std::vector<Bytes>& elements);
// EISAID("PNP0A08") as its compressed 32-bit form.
Bytes eisa_id(const std::string& id);

Bytes name(const std::string& name, const Bytes& value);                // Name(NAME, value)
Bytes scope(const std::string& path, const std::vector<Bytes>& body);   // Scope(path) { ... }
Bytes device(const std::string& name, const std::vector<Bytes>& body);  // Device(NAME) { ... }
// Method(NAME, 0, NotSerialized) { body }
Bytes method(const std::string& name, const std::vector<Bytes>& body);
// Method(NAME, 0, NotSerialized) { Return (value) }
Bytes method_returning(const std::string& name, const Bytes& value);
// Notify(path, value): tells the OS about an event on the device at `path`.
Bytes notify(const std::string& path, uint64_t value);

// The package-length prefix of a term (1 to 4 bytes) for a body of `length`.
Bytes pkg_length(size_t length);

}  // namespace aml

// Resource template (the contents of a _CRS buffer).
class ResourceTemplate {
 public:
  ResourceTemplate& io(uint16_t base, uint8_t length);           // IO (Decode16, base, base, 1, length)
  ResourceTemplate& irq(uint8_t irq);                            // IRQNoFlags () {irq}
  ResourceTemplate& bus_numbers(uint16_t first, uint16_t last);  // WordBusNumber
  ResourceTemplate& io_range(uint16_t first, uint16_t last);     // WordIO, entire range
  ResourceTemplate& memory32(uint32_t first, uint32_t last);     // DWordMemory, non-cacheable
  ResourceTemplate& memory64(uint64_t first, uint64_t last);     // QWordMemory
  // Memory32Fixed (ReadWrite, base, length): a device's register block.
  ResourceTemplate& memory32_fixed(uint32_t base, uint32_t length);
  // Interrupt (ResourceConsumer, Level|Edge, ActiveHigh|ActiveLow, Exclusive) {gsi}:
  // an interrupt by GSI, beyond the 16 ISA IRQs that irq() can name.
  ResourceTemplate& interrupt(uint32_t gsi, bool level_triggered, bool active_low);
  // The buffer object with the end tag appended.
  Bytes build() const;

 private:
  Bytes data_;
};

}  // namespace hostvisor::acpi
