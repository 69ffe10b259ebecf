// Guest memory as the CPU sees it: segmentation (offset -> linear), paging
// (linear -> physical, through the soft TLB) and physical access (RAM through
// GuestMemory's host mapping, anything else an MMIO exit via the replay log).
// Every access either completes or throws GuestFault / IoExitRequest before
// changing anything.
#pragma once

#include <cstdint>
#include <cstring>

#include "hv/emu/cpu.h"

namespace hostvisor::emu {

// Page walk + TLB fill. Returns the TLB entry for `linear`'s page or throws #PF.
const TlbEntry& tlb_fill(Cpu& cpu, uint64_t linear, Access access, bool user);

// Drops the whole TLB (paging mode change) or one page (INVLPG).
void tlb_flush(Cpu& cpu);
// A CR3 load: drops every translation except global ones.
void tlb_flush_non_global(Cpu& cpu);
void tlb_invlpg(Cpu& cpu, uint64_t linear);
// Drops every write entry (a page became code on this or another vCPU).
void tlb_flush_writes(Cpu& cpu);

uint64_t read_linear_slow(Cpu& cpu, uint64_t linear, unsigned size, bool user);
void write_linear_slow(Cpu& cpu, uint64_t linear, unsigned size, uint64_t value, bool user);

// Port I/O through the replay log (IN/OUT/INS/OUTS).
uint64_t port_read(Cpu& cpu, uint16_t port, unsigned size);
void port_write(Cpu& cpu, uint16_t port, unsigned size, uint64_t value);
// The same for an instruction whose port access is its only effect and its
// last step (IN, OUT): false when the VMM must do it, with
// cpu.io.exit_pending set; the handler then returns having changed nothing
// and the run loop stops without the cost of a C++ throw.
bool port_read_or_exit(Cpu& cpu, uint16_t port, unsigned size, uint64_t* value);
bool port_write_or_exit(Cpu& cpu, uint16_t port, unsigned size, uint64_t value);

// The instruction's accesses are done: forget the replay log.
inline void io_commit(Cpu& cpu) {
  cpu.io.count = 0;
  cpu.io.next = 0;
}

inline TlbEntry& tlb_slot(Cpu& cpu, uint64_t linear, Access access, bool user) {
  return cpu.tlb.e[user][static_cast<int>(access)][(linear >> 12) & (kTlbSize - 1)];
}

template <typename T>
inline T read_linear(Cpu& cpu, uint64_t linear, bool user) {
  const TlbEntry& e = tlb_slot(cpu, linear, Access::kRead, user);
  if (__builtin_expect(e.tag == (linear >> 12) && e.host && (linear & 0xfff) <= 0x1000 - sizeof(T), 1)) {
    T v;
    std::memcpy(&v, e.host + (linear & 0xfff), sizeof(T));
    return v;
  }
  return static_cast<T>(read_linear_slow(cpu, linear, sizeof(T), user));
}

template <typename T>
inline void write_linear(Cpu& cpu, uint64_t linear, T value, bool user) {
  const TlbEntry& e = tlb_slot(cpu, linear, Access::kWrite, user);
  if (__builtin_expect(e.tag == (linear >> 12) && e.host && (linear & 0xfff) <= 0x1000 - sizeof(T), 1)) {
    std::memcpy(e.host + (linear & 0xfff), &value, sizeof(T));
    return;
  }
  write_linear_slow(cpu, linear, sizeof(T), static_cast<uint64_t>(value), user);
}

// Accesses of a size known only at run time (1, 2, 4 or 8): one TLB check
// for every size, so the hit path stays small enough to inline.
[[gnu::always_inline]] inline uint64_t read_linear_n(Cpu& cpu, uint64_t linear, unsigned size, bool user) {
  const TlbEntry& e = tlb_slot(cpu, linear, Access::kRead, user);
  if (__builtin_expect(e.tag == (linear >> 12) && e.host && (linear & 0xfff) <= 0x1000 - size, 1)) {
    const uint8_t* p = e.host + (linear & 0xfff);
    switch (size) {
      case 1: return *p;
      case 2: {
        uint16_t v;
        std::memcpy(&v, p, 2);
        return v;
      }
      case 4: {
        uint32_t v;
        std::memcpy(&v, p, 4);
        return v;
      }
      default: {
        uint64_t v;
        std::memcpy(&v, p, 8);
        return v;
      }
    }
  }
  return read_linear_slow(cpu, linear, size, user);
}

[[gnu::always_inline]] inline void write_linear_n(Cpu& cpu, uint64_t linear, unsigned size, uint64_t value, bool user) {
  const TlbEntry& e = tlb_slot(cpu, linear, Access::kWrite, user);
  if (__builtin_expect(e.tag == (linear >> 12) && e.host && (linear & 0xfff) <= 0x1000 - size, 1)) {
    uint8_t* p = e.host + (linear & 0xfff);
    switch (size) {
      case 1: *p = static_cast<uint8_t>(value); break;
      case 2: {
        const uint16_t v = static_cast<uint16_t>(value);
        std::memcpy(p, &v, 2);
        break;
      }
      case 4: {
        const uint32_t v = static_cast<uint32_t>(value);
        std::memcpy(p, &v, 4);
        break;
      }
      default: std::memcpy(p, &value, 8); break;
    }
    return;
  }
  write_linear_slow(cpu, linear, size, value, user);
}

// Host pointer for a RAM write of `size` bytes at `linear` that does not
// cross a page, for locked read-modify-write as a host atomic. nullptr when
// the access must take the slow path (MMIO, page crossing, code page).
uint8_t* writable_host_pointer(Cpu& cpu, uint64_t linear, unsigned size, bool user);

inline bool is_canonical(uint64_t a) { return static_cast<uint64_t>((static_cast<int64_t>(a << 16) >> 16)) == a; }

// Segment offset -> linear address with the limit (legacy modes) or
// canonical (64-bit mode) check. Faults #SS for stack segment accesses.
[[gnu::noinline]] inline uint64_t linear_address_legacy(Cpu& cpu, uint8_t seg, uint64_t offset, unsigned size,
                                                        bool write);

[[gnu::always_inline]] inline uint64_t linear_address(Cpu& cpu, uint8_t seg, uint64_t offset, unsigned size,
                                                      bool write) {
  if (__builtin_expect(cpu.mode64, 1)) {
    uint64_t lin = offset + ((seg == kFs || seg == kGs) ? cpu.seg[seg].base : 0);
    if (__builtin_expect(!is_canonical(lin) || !is_canonical(lin + size - 1), 0))
      raise(seg == kSs ? kStackFault : kGp, 0);
    return lin;
  }
  return linear_address_legacy(cpu, seg, offset, size, write);
}

// The legacy modes' checks (out of line: the 64-bit fast path is inlined everywhere).
[[gnu::noinline]] inline uint64_t linear_address_legacy(Cpu& cpu, uint8_t seg, uint64_t offset, unsigned size,
                                                        bool write) {
  const Segment& s = cpu.seg[seg];
  if (cpu.cr0 & x86::kCr0Pe) {
    const uint8_t fault = seg == kSs ? kStackFault : kGp;
    if (__builtin_expect(s.unusable, 0)) raise(fault, 0);
    // Code segments are readable only with the R bit and never writable; data segments writable with W.
    if (write ? ((s.type & 0xa) != 0x2) : ((s.type & 0xa) == 0x8)) raise(fault, 0);
    const uint64_t last = offset + size - 1;
    if ((s.type & 0xc) == 0x4) {  // expand-down data segment
      const uint64_t upper = s.db ? 0xffffffffull : 0xffffull;
      if (offset <= s.limit || last > upper) raise(fault, 0);
    } else if (last > s.limit) {
      raise(fault, 0);
    }
  } else if (offset + size - 1 > s.limit) {
    raise(seg == kSs ? kStackFault : kGp, 0);
  }
  return (s.base + offset) & 0xffffffffull;
}

inline bool user_mode(const Cpu& cpu) { return cpu.cpl == 3; }

template <typename T>
inline T read_mem(Cpu& cpu, uint8_t seg, uint64_t offset) {
  return read_linear<T>(cpu, linear_address(cpu, seg, offset, sizeof(T), false), user_mode(cpu));
}
template <typename T>
inline void write_mem(Cpu& cpu, uint8_t seg, uint64_t offset, T value) {
  write_linear<T>(cpu, linear_address(cpu, seg, offset, sizeof(T), true), value, user_mode(cpu));
}
[[gnu::always_inline]] inline uint64_t read_mem_n(Cpu& cpu, uint8_t seg, uint64_t offset, unsigned size) {
  return read_linear_n(cpu, linear_address(cpu, seg, offset, size, false), size, user_mode(cpu));
}
[[gnu::always_inline]] inline void write_mem_n(Cpu& cpu, uint8_t seg, uint64_t offset, unsigned size, uint64_t value) {
  write_linear_n(cpu, linear_address(cpu, seg, offset, size, true), size, value, user_mode(cpu));
}
// Fails the access now (with the exception the write would raise) without writing.
inline void probe_write(Cpu& cpu, uint8_t seg, uint64_t offset, unsigned size) {
  uint64_t lin = linear_address(cpu, seg, offset, size, true);
  if (tlb_slot(cpu, lin, Access::kWrite, user_mode(cpu)).tag != (lin >> 12))
    tlb_fill(cpu, lin, Access::kWrite, user_mode(cpu));
  uint64_t last = lin + size - 1;
  if ((last >> 12) != (lin >> 12)) tlb_fill(cpu, last, Access::kWrite, user_mode(cpu));
}

}  // namespace hostvisor::emu
