#include "arch/x86_64/acpi/aml.h"

#include <stdexcept>

namespace hostvisor::acpi {

namespace {

void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

void put16(Bytes& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put64(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// AML opcodes used here.
constexpr uint8_t kZeroOp = 0x00, kOneOp = 0x01, kNameOp = 0x08, kBytePrefix = 0x0a, kWordPrefix = 0x0b,
                  kDWordPrefix = 0x0c, kStringPrefix = 0x0d, kQWordPrefix = 0x0e, kScopeOp = 0x10, kBufferOp = 0x11,
                  kPackageOp = 0x12, kMethodOp = 0x14, kDualNamePrefix = 0x2e, kMultiNamePrefix = 0x2f,
                  kRootChar = 0x5c, kExtOpPrefix = 0x5b, kDeviceOp = 0x82, kNotifyOp = 0x86, kReturnOp = 0xa4;

Bytes name_seg(std::string seg) {
  // The generator only emits names it was given; a bad one is a programming
  // error in hostvisor, not user input.
  if (seg.empty() || seg.size() > 4) throw std::invalid_argument("AML name segment '" + seg + "'");
  while (seg.size() < 4) seg.push_back('_');
  return Bytes(seg.begin(), seg.end());
}

// Term with a PkgLength covering its own length field and body.
Bytes with_pkg_length(const Bytes& body) {
  // The encoded length includes the length bytes themselves.
  for (size_t width = 1; width <= 4; ++width) {
    const size_t total = body.size() + width;
    const size_t limit = width == 1 ? 0x3f : (1u << (4 + 8 * (width - 1))) - 1;
    if (total <= limit) {
      Bytes out = aml::pkg_length(total);
      if (out.size() != width) continue;
      append(out, body);
      return out;
    }
  }
  throw std::length_error("AML package too large");
}

}  // namespace

namespace aml {

Bytes pkg_length(size_t length) {
  Bytes out;
  if (length <= 0x3f) {
    out.push_back(static_cast<uint8_t>(length));
  } else if (length <= 0xfff) {
    out.push_back(static_cast<uint8_t>(0x40 | (length & 0xf)));
    out.push_back(static_cast<uint8_t>(length >> 4));
  } else if (length <= 0xfffff) {
    out.push_back(static_cast<uint8_t>(0x80 | (length & 0xf)));
    out.push_back(static_cast<uint8_t>(length >> 4));
    out.push_back(static_cast<uint8_t>(length >> 12));
  } else {
    out.push_back(static_cast<uint8_t>(0xc0 | (length & 0xf)));
    out.push_back(static_cast<uint8_t>(length >> 4));
    out.push_back(static_cast<uint8_t>(length >> 12));
    out.push_back(static_cast<uint8_t>(length >> 20));
  }
  return out;
}

Bytes name_string(const std::string& path) {
  Bytes out;
  std::string rest = path;
  if (!rest.empty() && rest[0] == '\\') {
    out.push_back(kRootChar);
    rest.erase(0, 1);
  }
  std::vector<std::string> segs;
  size_t start = 0;
  while (start <= rest.size() && !rest.empty()) {
    size_t dot = rest.find('.', start);
    segs.push_back(rest.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (segs.empty()) {
    out.push_back(0x00);  // NullName
  } else if (segs.size() == 2) {
    out.push_back(kDualNamePrefix);
  } else if (segs.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  for (const auto& s : segs) append(out, name_seg(s));
  return out;
}

Bytes integer(uint64_t value) {
  Bytes out;
  if (value == 0) {
    out.push_back(kZeroOp);
  } else if (value == 1) {
    out.push_back(kOneOp);
  } else if (value <= 0xff) {
    out = {kBytePrefix, static_cast<uint8_t>(value)};
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    put16(out, static_cast<uint16_t>(value));
  } else if (value <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    put32(out, static_cast<uint32_t>(value));
  } else {
    out.push_back(kQWordPrefix);
    put64(out, value);
  }
  return out;
}

Bytes string(const std::string& text) {
  Bytes out{kStringPrefix};
  out.insert(out.end(), text.begin(), text.end());
  out.push_back(0);
  return out;
}

Bytes buffer(const Bytes& data) {
  Bytes body = integer(data.size());
  append(body, data);
  Bytes out{kBufferOp};
  append(out, with_pkg_length(body));
  return out;
}

Bytes package(const std::vector<Bytes>& elements) {
  if (elements.size() > 255) throw std::length_error("AML package with more than 255 elements");
  Bytes body{static_cast<uint8_t>(elements.size())};
  for (const auto& e : elements) append(body, e);
  Bytes out{kPackageOp};
  append(out, with_pkg_length(body));
  return out;
}

Bytes eisa_id(const std::string& id) {
  if (id.size() != 7) throw std::invalid_argument("EISA id '" + id + "'");
  auto hex = [&](char c) -> uint32_t {
    if (c >= '0' && c <= '9') return static_cast<uint32_t>(c - '0');
    if (c >= 'A' && c <= 'F') return static_cast<uint32_t>(c - 'A' + 10);
    throw std::invalid_argument("EISA id '" + id + "'");
  };
  // Three 5-bit letters ('A' = 1), then four hex digits; stored big-endian.
  const uint32_t v = ((static_cast<uint32_t>(id[0] - '@') & 0x1f) << 26) |
                     ((static_cast<uint32_t>(id[1] - '@') & 0x1f) << 21) |
                     ((static_cast<uint32_t>(id[2] - '@') & 0x1f) << 16) | (hex(id[3]) << 12) | (hex(id[4]) << 8) |
                     (hex(id[5]) << 4) | hex(id[6]);
  Bytes out{kDWordPrefix};
  put32(out, __builtin_bswap32(v));
  return out;
}

Bytes name(const std::string& n, const Bytes& value) {
  Bytes out{kNameOp};
  append(out, name_string(n));
  append(out, value);
  return out;
}

Bytes scope(const std::string& path, const std::vector<Bytes>& body) {
  Bytes inner = name_string(path);
  for (const auto& b : body) append(inner, b);
  Bytes out{kScopeOp};
  append(out, with_pkg_length(inner));
  return out;
}

Bytes device(const std::string& n, const std::vector<Bytes>& body) {
  Bytes inner = name_string(n);
  for (const auto& b : body) append(inner, b);
  Bytes out{kExtOpPrefix, kDeviceOp};
  append(out, with_pkg_length(inner));
  return out;
}

Bytes method(const std::string& n, const std::vector<Bytes>& body) {
  Bytes inner = name_string(n);
  inner.push_back(0x00);  // MethodFlags: 0 arguments, not serialized
  for (const auto& b : body) append(inner, b);
  Bytes out{kMethodOp};
  append(out, with_pkg_length(inner));
  return out;
}

Bytes method_returning(const std::string& n, const Bytes& value) {
  Bytes ret{kReturnOp};
  append(ret, value);
  return method(n, {ret});
}

Bytes notify(const std::string& path, uint64_t value) {
  Bytes out{kNotifyOp};
  append(out, name_string(path));
  append(out, integer(value));
  return out;
}

}  // namespace aml

ResourceTemplate& ResourceTemplate::io(uint16_t base, uint8_t length) {
  data_.push_back(0x47);  // small item: I/O port descriptor, 7 bytes
  data_.push_back(0x01);  // 16-bit decode
  put16(data_, base);
  put16(data_, base);
  data_.push_back(0x01);  // alignment
  data_.push_back(length);
  return *this;
}

ResourceTemplate& ResourceTemplate::irq(uint8_t irq) {
  data_.push_back(0x22);  // small item: IRQ descriptor, 2 bytes (edge, active high)
  put16(data_, static_cast<uint16_t>(1u << irq));
  return *this;
}

namespace {
// Large address space descriptors share a header: type, general flags, type flags.
void address_header(Bytes& out, uint8_t tag, uint16_t length, uint8_t resource_type, uint8_t type_flags) {
  out.push_back(tag);
  put16(out, length);
  out.push_back(resource_type);
  out.push_back(0x0c);  // general flags: min and max address fixed, positive decode, producer
  out.push_back(type_flags);
}
}  // namespace

ResourceTemplate& ResourceTemplate::bus_numbers(uint16_t first, uint16_t last) {
  address_header(data_, 0x88, 13, 2, 0);  // Word address space, bus number range
  put16(data_, 0);                        // granularity
  put16(data_, first);
  put16(data_, last);
  put16(data_, 0);  // translation
  put16(data_, static_cast<uint16_t>(last - first + 1));
  return *this;
}

ResourceTemplate& ResourceTemplate::io_range(uint16_t first, uint16_t last) {
  address_header(data_, 0x88, 13, 1, 0x03);  // Word address space, I/O, entire range
  put16(data_, 0);
  put16(data_, first);
  put16(data_, last);
  put16(data_, 0);
  put16(data_, static_cast<uint16_t>(last - first + 1));
  return *this;
}

ResourceTemplate& ResourceTemplate::memory32(uint32_t first, uint32_t last) {
  address_header(data_, 0x87, 23, 0, 0x01);  // DWord address space, memory, read/write, non-cacheable
  put32(data_, 0);
  put32(data_, first);
  put32(data_, last);
  put32(data_, 0);
  put32(data_, last - first + 1);
  return *this;
}

ResourceTemplate& ResourceTemplate::memory64(uint64_t first, uint64_t last) {
  address_header(data_, 0x8a, 43, 0, 0x01);  // QWord address space, memory
  put64(data_, 0);
  put64(data_, first);
  put64(data_, last);
  put64(data_, 0);
  put64(data_, last - first + 1);
  return *this;
}

ResourceTemplate& ResourceTemplate::memory32_fixed(uint32_t base, uint32_t length) {
  data_.push_back(0x86);  // large item: 32-bit fixed memory range
  put16(data_, 9);
  data_.push_back(0x01);  // read/write
  put32(data_, base);
  put32(data_, length);
  return *this;
}

ResourceTemplate& ResourceTemplate::interrupt(uint32_t gsi, bool level_triggered, bool active_low) {
  data_.push_back(0x89);  // large item: extended interrupt descriptor
  put16(data_, 6);        // flags, table length, one interrupt number
  // Flags: bit 0 consumer, bit 1 edge (0 = level), bit 2 active low, bit 3 shared (0 = exclusive).
  data_.push_back(static_cast<uint8_t>(0x01 | (level_triggered ? 0 : 0x02) | (active_low ? 0x04 : 0)));
  data_.push_back(1);
  put32(data_, gsi);
  return *this;
}

Bytes ResourceTemplate::build() const {
  Bytes data = data_;
  data.push_back(0x79);  // end tag
  data.push_back(0x00);  // checksum 0: "treat as correct"
  return aml::buffer(data);
}

}  // namespace hostvisor::acpi
