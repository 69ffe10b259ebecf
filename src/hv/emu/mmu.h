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

inline uint64_t read_linear_n(Cpu& cpu, uint64_t linear, unsigned size, bool user) {
  switch (size) {
    case 1: return read_linear<uint8_t>(cpu, linear, user);
    case 2: return read_linear<uint16_t>(cpu, linear, user);
    case 4: return read_linear<uint32_t>(cpu, linear, user);
    default: return read_linear<uint64_t>(cpu, linear, user);
  }
}

inline void write_linear_n(Cpu& cpu, uint64_t linear, unsigned size, uint64_t value, bool user) {
  switch (size) {
    case 1: write_linear<uint8_t>(cpu, linear, static_cast<uint8_t>(value), user); break;
    case 2: write_linear<uint16_t>(cpu, linear, static_cast<uint16_t>(value), user); break;
    case 4: write_linear<uint32_t>(cpu, linear, static_cast<uint32_t>(value), user); break;
    default: write_linear<uint64_t>(cpu, linear, value, user); break;
  }
}

// Host pointer for a RAM write of `size` bytes at `linear` that does not
// cross a page, for locked read-modify-write as a host atomic. nullptr when
// the access must take the slow path (MMIO, page crossing, code page).
uint8_t* writable_host_pointer(Cpu& cpu, uint64_t linear, unsigned size, bool user);

inline bool is_canonical(uint64_t a) { return static_cast<uint64_t>((static_cast<int64_t>(a << 16) >> 16)) == a; }

// Segment offset -> linear address with the limit (legacy modes) or
// canonical (64-bit mode) check. Faults #SS for stack segment accesses.
inline uint64_t linear_address(Cpu& cpu, uint8_t seg, uint64_t offset, unsigned size, bool write) {
  if (cpu.mode64) {
    uint64_t lin = offset + ((seg == kFs || seg == kGs) ? cpu.seg[seg].base : 0);
    if (__builtin_expect(!is_canonical(lin) || !is_canonical(lin + size - 1), 0))
      raise(seg == kSs ? kStackFault : kGp, 0);
    return lin;
  }
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
inline uint64_t read_mem_n(Cpu& cpu, uint8_t seg, uint64_t offset, unsigned size) {
  return read_linear_n(cpu, linear_address(cpu, seg, offset, size, false), size, user_mode(cpu));
}
inline void write_mem_n(Cpu& cpu, uint8_t seg, uint64_t offset, unsigned size, uint64_t value) {
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
