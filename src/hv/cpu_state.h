// Backend-neutral x86-64 CPU state. Both backends read and write these, so
// loaders set up a boot CPU without knowing the backend, and a snapshot taken
// on one backend restores on the other.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace hostvisor {

struct Registers {
  uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0, rbp = 0;
  uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
  uint64_t rip = 0;
  uint64_t rflags = 0x2;  // bit 1 is always set

  bool operator==(const Registers&) const = default;
};

// A segment register with its hidden (descriptor cache) part.
struct Segment {
  uint64_t base = 0;
  uint32_t limit = 0xffff;
  uint16_t selector = 0;
  uint8_t type = 0;  // descriptor type field (4 bits)
  uint8_t dpl = 0;
  bool present = true;
  bool s = true;    // code/data (true) or system (false)
  bool db = false;  // default operand size 32
  bool l = false;   // 64-bit code segment
  bool g = false;   // limit in 4 KiB units
  bool avl = false;
  bool unusable = false;

  bool operator==(const Segment&) const = default;
};

struct DescriptorTable {
  uint64_t base = 0;
  uint16_t limit = 0xffff;

  bool operator==(const DescriptorTable&) const = default;
};

struct SystemRegisters {
  Segment cs, ds, es, fs, gs, ss, tr, ldt;
  DescriptorTable gdt, idt;
  uint64_t cr0 = 0x60000010, cr2 = 0, cr3 = 0, cr4 = 0, cr8 = 0;
  uint64_t efer = 0;
  uint64_t apic_base = 0xfee00900;  // enabled, BSP

  bool operator==(const SystemRegisters&) const = default;
};

// The six segment registers of `s` in the x86 encoding order (ES, CS, SS,
// DS, FS, GS), for code that copies them one by one: `s` is a
// SystemRegisters, or a struct that names them alike (KVM's kvm_sregs).
template <class Sregs>
constexpr auto segment_registers(Sregs& s) {
  return std::array{&s.es, &s.cs, &s.ss, &s.ds, &s.fs, &s.gs};
}

// Copies the control registers between structs that name them alike
// (SystemRegisters, kvm_sregs, the software CPU's state). CR8 is the
// caller's: the software CPU keeps it in its local APIC's TPR.
template <class From, class To>
void copy_control_registers(const From& from, To& to) {
  to.cr0 = from.cr0, to.cr2 = from.cr2, to.cr3 = from.cr3, to.cr4 = from.cr4;
  to.efer = from.efer;
  to.apic_base = from.apic_base;
}

// Architectural bits the loaders and backends both need.
namespace x86 {
constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Mp = 1ull << 1;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Ne = 1ull << 5;
constexpr uint64_t kCr0Wp = 1ull << 16;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kCr4Pge = 1ull << 7;
constexpr uint64_t kEferSce = 1ull << 0;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;
constexpr uint64_t kEferNxe = 1ull << 11;
constexpr uint64_t kRflagsIf = 1ull << 9;
}  // namespace x86

struct Msr {
  uint32_t index = 0;
  uint64_t value = 0;

  bool operator==(const Msr&) const = default;
};

// Real-mode reset state of an x86 CPU (what a vCPU holds before a loader sets
// it up): CS:IP = F000:FFF0 with CS base FFFF0000.
SystemRegisters reset_system_registers();

}  // namespace hostvisor
