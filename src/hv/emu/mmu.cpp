#include "hv/emu/mmu.h"

#include <algorithm>
#include <cstring>
#include <span>

#include "devices/bus/bus.h"
#include "hv/emu/code_map.h"
#include "hv/emu/platform/local_apic.h"
#include "memory/guest_memory.h"

namespace hostvisor::emu {
namespace {

constexpr uint64_t kPteP = 1ull << 0;
constexpr uint64_t kPteRw = 1ull << 1;
constexpr uint64_t kPteUs = 1ull << 2;
constexpr uint64_t kPteA = 1ull << 5;
constexpr uint64_t kPteD = 1ull << 6;
constexpr uint64_t kPtePs = 1ull << 7;
constexpr uint64_t kPteG = 1ull << 8;
constexpr uint64_t kPteNx = 1ull << 63;
constexpr unsigned kMaxPhysBits = 40;  // advertised in CPUID 0x80000008
constexpr uint64_t kPhysMask = ((1ull << kMaxPhysBits) - 1) & ~0xfffull;
constexpr uint64_t kCr4Pse = 1ull << 4;

constexpr uint32_t kPfPresent = 1, kPfWrite = 2, kPfUser = 4, kPfRsvd = 8, kPfFetch = 16;

[[noreturn]] void page_fault(Cpu& cpu, uint64_t linear, uint32_t error) {
  cpu.cr2 = linear;
  raise(kPf, error);
}

// Page-table entries live in RAM; a table outside RAM is a guest bug we cannot model.
uint8_t* table_entry(Cpu& cpu, uint64_t phys, unsigned size) {
  uint8_t* p = cpu.memory->host_pointer(GuestAddress(phys), size);
  if (!p) throw EmulationFailure{"page table outside guest RAM"};
  return p;
}

uint64_t load_entry(uint8_t* p, unsigned size) {
  if (size == 8) return __atomic_load_n(reinterpret_cast<uint64_t*>(p), __ATOMIC_ACQUIRE);
  return __atomic_load_n(reinterpret_cast<uint32_t*>(p), __ATOMIC_ACQUIRE);
}

void set_bits(uint8_t* p, unsigned size, uint64_t bits) {
  if (size == 8) {
    __atomic_fetch_or(reinterpret_cast<uint64_t*>(p), bits, __ATOMIC_ACQ_REL);
  } else {
    __atomic_fetch_or(reinterpret_cast<uint32_t*>(p), static_cast<uint32_t>(bits), __ATOMIC_ACQ_REL);
  }
}

struct Walk {
  uint64_t phys;  // physical address of the 4 KiB page holding `linear`
  bool global;    // the leaf's G bit, honoured only with CR4.PGE
  uint64_t span;  // 4 KiB pages - 1 in the guest page (0, or a large page's 0x1ff, 0x3ff, 0x3ffff)
  // For the second-level TLB: the permissions of every level, and the
  // leaf's D bit as the walk leaves it.
  bool writable = false, user = false, no_exec = false, dirty = false;
};

// Walks the guest page tables for `linear`, checks the access and sets A/D.
Walk walk(Cpu& cpu, uint64_t linear, Access access, bool user) {
  const bool write = access == Access::kWrite;
  const bool nxe = cpu.efer & x86::kEferNxe;
  uint32_t err = (write ? kPfWrite : 0) | (user ? kPfUser : 0) | (access == Access::kExec && nxe ? kPfFetch : 0);

  struct Level {
    uint8_t* entry;
    unsigned size;
  } levels[4];
  unsigned depth = 0;
  bool rw = true, us = true, nx = false;
  uint64_t leaf = 0, page_base = 0;
  uint64_t span = 0;  // 4 KiB pages - 1 in the page that maps `linear`
  unsigned entry_size;

  if (!(cpu.cr4 & x86::kCr4Pae)) {
    // 32-bit paging: 2 levels of 4-byte entries, optional 4 MiB pages (PSE, PSE-36).
    entry_size = 4;
    uint64_t table = cpu.cr3 & 0xfffff000ull;
    const uint32_t lin = static_cast<uint32_t>(linear);
    uint8_t* pde_p = table_entry(cpu, table + ((lin >> 22) << 2), 4);
    uint64_t pde = load_entry(pde_p, 4);
    if (!(pde & kPteP)) page_fault(cpu, linear, err);
    levels[depth++] = {pde_p, 4};
    rw &= (pde & kPteRw) != 0;
    us &= (pde & kPteUs) != 0;
    if ((pde & kPtePs) && (cpu.cr4 & kCr4Pse)) {
      if (pde & (1ull << 21)) page_fault(cpu, linear, err | kPfRsvd | kPfPresent);
      leaf = pde;
      page_base = (pde & 0xffc00000ull) | (((pde >> 13) & 0xff) << 32);
      page_base += lin & 0x3ff000;
      span = 0x3ff;
      cpu.tlb.has_large_pages = true;
    } else {
      uint8_t* pte_p = table_entry(cpu, (pde & 0xfffff000ull) + (((lin >> 12) & 0x3ff) << 2), 4);
      uint64_t pte = load_entry(pte_p, 4);
      if (!(pte & kPteP)) page_fault(cpu, linear, err);
      levels[depth++] = {pte_p, 4};
      rw &= (pte & kPteRw) != 0;
      us &= (pte & kPteUs) != 0;
      leaf = pte;
      page_base = pte & 0xfffff000ull;
    }
  } else {
    entry_size = 8;
    uint64_t reserved = ~kPhysMask & ~0xfffull & ~kPteNx;
    if (!nxe) reserved |= kPteNx;
    unsigned shift;
    uint64_t table;
    if (cpu.long_mode) {
      shift = 39;
      table = cpu.cr3 & kPhysMask;
    } else {
      // PAE: the 4 PDPTEs (no R/W, U/S or NX in them).
      uint8_t* pdpte_p = table_entry(cpu, (cpu.cr3 & 0xffffffe0ull) + (((linear >> 30) & 3) << 3), 8);
      uint64_t pdpte = load_entry(pdpte_p, 8);
      if (!(pdpte & kPteP)) page_fault(cpu, linear, err);
      if (pdpte & (reserved | 0x1e6ull | kPteNx)) page_fault(cpu, linear, err | kPfRsvd | kPfPresent);
      shift = 21;
      table = pdpte & kPhysMask;
    }
    for (;; shift -= 9) {
      uint8_t* e_p = table_entry(cpu, table + (((linear >> shift) & 0x1ff) << 3), 8);
      uint64_t e = load_entry(e_p, 8);
      if (!(e & kPteP)) page_fault(cpu, linear, err);
      uint64_t rsvd = reserved;
      if (shift == 39) rsvd |= kPtePs;
      if (shift == 30 && (e & kPtePs)) rsvd |= 0x3fffe000ull;  // 1 GiB page: bits 29:13 reserved
      if (shift == 21 && (e & kPtePs)) rsvd |= 0x1fe000ull;    // 2 MiB page: bits 20:13 reserved
      if (e & rsvd) page_fault(cpu, linear, err | kPfRsvd | kPfPresent);
      levels[depth++] = {e_p, 8};
      rw &= (e & kPteRw) != 0;
      us &= (e & kPteUs) != 0;
      nx |= (e & kPteNx) != 0;
      if (shift == 12 || ((e & kPtePs) && shift <= 30)) {
        leaf = e;
        uint64_t page_mask = (1ull << shift) - 1;
        page_base = ((e & kPhysMask) & ~page_mask) + (linear & page_mask & ~0xfffull);
        span = page_mask >> 12;
        if (shift > 12) cpu.tlb.has_large_pages = true;
        break;
      }
      table = e & kPhysMask;
    }
  }

  // Permission checks (SMEP/SMAP are not advertised).
  bool denied = false;
  if (user && !us) denied = true;
  if (write && !rw && (user || (cpu.cr0 & x86::kCr0Wp))) denied = true;
  if (access == Access::kExec && nxe && nx) denied = true;
  if (denied) page_fault(cpu, linear, err | kPfPresent);

  // Accessed bits on every level, dirty on the leaf for writes.
  for (unsigned i = 0; i < depth; ++i) {
    uint64_t v = load_entry(levels[i].entry, levels[i].size);
    uint64_t want = kPteA | ((write && i == depth - 1) ? kPteD : 0);
    if ((v & want) != want) set_bits(levels[i].entry, levels[i].size, want);
  }
  (void)entry_size;
  return Walk{page_base, (leaf & kPteG) != 0 && (cpu.cr4 & x86::kCr4Pge) != 0, span, rw, us, nx,
              write || (leaf & kPteD) != 0};
}

}  // namespace

void tlb_flush(Cpu& cpu) { cpu.tlb.flush(); }

void tlb_flush_non_global(Cpu& cpu) { cpu.tlb.flush_non_global(); }

void tlb_invlpg(Cpu& cpu, uint64_t linear) { cpu.tlb.flush_page(linear); }

void tlb_flush_writes(Cpu& cpu) {
  for (auto& by_priv : cpu.tlb.e)
    for (auto& entry : by_priv[static_cast<int>(Access::kWrite)]) entry.tag = kTlbInvalid;
  if (TlbMirror* m = cpu.tlb.mirror.get())
    for (auto& by_priv : m->tag) std::memset(by_priv[1], 0xff, sizeof(by_priv[1]));
}

namespace {

// The second-level TLB's entry for `linear` when it allows the access as
// the walk would without setting a bit (second_level_tlb.h).
bool second_level_hit(Cpu& cpu, uint64_t linear, Access access, bool user, Walk& w) {
  const SecondLevelEntry* e = cpu.tlb.second.find(linear);
  if (!e) return false;
  const bool write = access == Access::kWrite;
  if (user && !e->user) return false;
  if (write && (!e->dirty || (!e->writable && (user || (cpu.cr0 & x86::kCr0Wp))))) return false;
  if (access == Access::kExec && (cpu.efer & x86::kEferNxe) && e->no_exec) return false;
  w = Walk{e->phys, e->global, 0, e->writable, e->user, e->no_exec, e->dirty};
  return true;
}

}  // namespace

const TlbEntry& tlb_fill(Cpu& cpu, uint64_t linear, Access access, bool user) {
  Walk w{linear & 0xfffff000ull, false, 0};
  const bool paging = cpu.cr0 & x86::kCr0Pg;
  const bool hit = paging && second_level_hit(cpu, linear, access, user, w);
  if (paging) cpu.tlb.second.count(hit);
  if (paging && !hit) {
    w = walk(cpu, linear, access, user);
    if (w.span == 0) cpu.tlb.second.insert(linear, {0, w.phys, 0, w.global, w.writable, w.user, w.no_exec, w.dirty});
  }
  TlbEntry& e = tlb_slot(cpu, linear, access, user);
  e.tag = linear >> 12;
  e.phys = w.phys;
  e.global = w.global;
  e.span = w.span;
  e.host = cpu.memory ? cpu.memory->host_pointer(GuestAddress(w.phys), 0x1000) : nullptr;
  // The local APIC page is not RAM even if RAM lies below it; writes to code
  // pages must see the code map. Both keep the slow path.
  if (e.host && access == Access::kWrite && cpu.code && cpu.code->is_code(w.phys)) e.host = nullptr;
  if (TlbMirror* m = cpu.tlb.mirror.get(); m && access != Access::kExec) {
    const unsigned i = (linear >> 12) & (kTlbSize - 1), kind = static_cast<unsigned>(access);
    m->tag[user][kind][i] = e.host ? e.tag : kTlbInvalid;
    m->addend[user][kind][i] = reinterpret_cast<uintptr_t>(e.host) - (linear & ~0xfffull);
  }
  return e;
}

namespace {

// Accesses the backend serves itself: this vCPU's local APIC page, and the
// platform devices (PIC, PIT, IOAPIC) on the internal buses.
bool internal_access(Cpu& cpu, bool is_port, bool is_write, uint64_t address, uint8_t* data, unsigned size) {
  std::span<uint8_t> span(data, size);
  if (!is_port && cpu.lapic && cpu.lapic->mmio_enabled() && address >= cpu.lapic->base_address() &&
      address - cpu.lapic->base_address() < LocalApic::kMmioSize) {
    const uint64_t offset = address - cpu.lapic->base_address();
    if (is_write) {
      cpu.lapic->mmio_write(offset, span);
    } else {
      cpu.lapic->mmio_read(offset, span);
    }
    return true;
  }
  Bus* bus = is_port ? cpu.internal_ports : cpu.internal_mmio;
  if (!bus) return false;
  return is_write ? bus->write(address, span) : bus->read(address, span);
}

// The access from the replay log, done in-thread, or recorded for the VMM
// (returns false: the instruction must stop and restart after the exit).
bool try_io_access(Cpu& cpu, bool is_port, bool is_write, uint64_t address, unsigned size, uint64_t value,
                   uint64_t* result) {
  IoReplay& io = cpu.io;
  if (io.next < io.count) {
    IoRecord& r = io.records[io.next++];
    if (r.is_port != is_port || r.is_write != is_write || r.address != address || r.size != size) {
      throw EmulationFailure{"an instruction repeated after an I/O exit made a different access"};
    }
    uint64_t v = 0;
    if (!is_write) std::memcpy(&v, r.data, size);
    *result = v;
    return true;
  }
  if (io.count == IoReplay::kMax) throw EmulationFailure{"an instruction made too many MMIO/port accesses"};
  IoRecord& r = io.records[io.count++];
  r.is_port = is_port;
  r.is_write = is_write;
  r.address = address;
  r.size = static_cast<uint8_t>(size);
  std::memset(r.data, 0, sizeof(r.data));
  if (is_write) std::memcpy(r.data, &value, size);
  if (internal_access(cpu, is_port, is_write, address, r.data, size)) {
    // Done already; recorded so a restart of this instruction does not repeat it.
    io.next = io.count;
    uint64_t v = 0;
    if (!is_write) std::memcpy(&v, r.data, size);
    *result = v;
    return true;
  }
  return false;
}

uint64_t io_access(Cpu& cpu, bool is_port, bool is_write, uint64_t address, unsigned size, uint64_t value) {
  uint64_t result = 0;
  if (!try_io_access(cpu, is_port, is_write, address, size, value, &result)) throw IoExitRequest{};
  return result;
}

// Physical access of `size` bytes within one page.
uint64_t phys_read(Cpu& cpu, const TlbEntry& e, uint64_t linear, unsigned size) {
  if (e.host) {
    uint64_t v = 0;
    std::memcpy(&v, e.host + (linear & 0xfff), size);
    return v;
  }
  uint64_t phys = e.phys + (linear & 0xfff);
  if (uint8_t* p = cpu.memory ? cpu.memory->host_pointer(GuestAddress(phys), size) : nullptr) {
    uint64_t v = 0;
    std::memcpy(&v, p, size);
    return v;
  }
  return io_access(cpu, false, false, phys, size, 0);
}

void phys_write(Cpu& cpu, const TlbEntry& e, uint64_t linear, unsigned size, uint64_t value) {
  uint64_t phys = e.phys + (linear & 0xfff);
  uint8_t* p =
      e.host ? e.host + (linear & 0xfff) : (cpu.memory ? cpu.memory->host_pointer(GuestAddress(phys), size) : nullptr);
  if (!p) {
    io_access(cpu, false, true, phys, size, value);
    return;
  }
  std::memcpy(p, &value, size);
  // The generation moves after the bytes land: a vCPU decoding this page
  // meanwhile then sees the old generation and decodes again at its next lookup.
  // The fence keeps the host from loading is_code before the store is
  // visible (store-load reordering): either this load sees the page marked
  // code, or the decoding vCPU, which marks it before it reads the bytes,
  // reads this store. Without it, a store could land just after another vCPU
  // read the bytes and still find the page not code: a copy stale for good.
  if (!cpu.code) return;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (cpu.code->is_code(phys)) {
    cpu.code->invalidate(phys);
    cpu.stop_block = true;  // the executing block may be the one just written
  }
}

const TlbEntry& lookup(Cpu& cpu, uint64_t linear, Access access, bool user) {
  const TlbEntry& e = tlb_slot(cpu, linear, access, user);
  if (e.tag == (linear >> 12)) return e;
  return tlb_fill(cpu, linear, access, user);
}

}  // namespace

uint64_t read_linear_slow(Cpu& cpu, uint64_t linear, unsigned size, bool user) {
  if (!cpu.long_mode) linear &= 0xffffffffull;
  const unsigned first = static_cast<unsigned>(std::min<uint64_t>(size, 0x1000 - (linear & 0xfff)));
  if (first == size) return phys_read(cpu, lookup(cpu, linear, Access::kRead, user), linear, size);
  uint64_t second_lin = linear + first;
  if (!cpu.long_mode) second_lin &= 0xffffffffull;
  // Translate both pages before reading either (a fault leaves nothing half done).
  TlbEntry a = lookup(cpu, linear, Access::kRead, user);
  TlbEntry b = lookup(cpu, second_lin, Access::kRead, user);
  uint64_t lo = phys_read(cpu, a, linear, first);
  uint64_t hi = phys_read(cpu, b, second_lin, size - first);
  return lo | (hi << (first * 8));
}

void write_linear_slow(Cpu& cpu, uint64_t linear, unsigned size, uint64_t value, bool user) {
  if (!cpu.long_mode) linear &= 0xffffffffull;
  const unsigned first = static_cast<unsigned>(std::min<uint64_t>(size, 0x1000 - (linear & 0xfff)));
  if (first == size) {
    phys_write(cpu, lookup(cpu, linear, Access::kWrite, user), linear, size, value);
    return;
  }
  uint64_t second_lin = linear + first;
  if (!cpu.long_mode) second_lin &= 0xffffffffull;
  TlbEntry a = lookup(cpu, linear, Access::kWrite, user);
  TlbEntry b = lookup(cpu, second_lin, Access::kWrite, user);
  // With MMIO on either side the halves become separate replayed accesses.
  phys_write(cpu, a, linear, first, value & ((1ull << (first * 8)) - 1));
  phys_write(cpu, b, second_lin, size - first, value >> (first * 8));
}

uint8_t* writable_host_pointer(Cpu& cpu, uint64_t linear, unsigned size, bool user) {
  if ((linear & 0xfff) > 0x1000 - size) return nullptr;
  const TlbEntry& e = lookup(cpu, linear, Access::kWrite, user);
  return e.host ? e.host + (linear & 0xfff) : nullptr;
}

uint64_t port_read(Cpu& cpu, uint16_t port, unsigned size) { return io_access(cpu, true, false, port, size, 0); }

void port_write(Cpu& cpu, uint16_t port, unsigned size, uint64_t value) {
  io_access(cpu, true, true, port, size, value);
}

bool port_read_or_exit(Cpu& cpu, uint16_t port, unsigned size, uint64_t* value) {
  if (try_io_access(cpu, true, false, port, size, 0, value)) return true;
  cpu.io.exit_pending = true;
  return false;
}

bool port_write_or_exit(Cpu& cpu, uint16_t port, unsigned size, uint64_t value) {
  uint64_t unused;
  if (try_io_access(cpu, true, true, port, size, value, &unused)) return true;
  cpu.io.exit_pending = true;
  return false;
}

}  // namespace hostvisor::emu
