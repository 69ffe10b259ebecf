// A guest-physical address: a distinct type so it is never mixed up with a
// host pointer, a length or a guest-virtual address.
#pragma once

#include <compare>
#include <cstdint>

namespace hostvisor {

class GuestAddress {
 public:
  constexpr GuestAddress() = default;
  constexpr explicit GuestAddress(uint64_t value) : value_(value) {}
  constexpr uint64_t value() const { return value_; }
  // Wrapping is the caller's concern; GuestMemory checks overflow on access.
  constexpr GuestAddress operator+(uint64_t offset) const { return GuestAddress(value_ + offset); }
  constexpr auto operator<=>(const GuestAddress&) const = default;

 private:
  uint64_t value_ = 0;
};

}  // namespace hostvisor
