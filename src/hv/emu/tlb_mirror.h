// The translated code's copy of the soft TLB's read and write arrays
// (jit/translator.cpp's inline check), laid out for it: separate arrays of
// tags and addends, so an entry is [index * 8 + constant] with the index a
// byte (no multiply, no Cpu pointer), and a hit is one compare and one add.
//
// - A tag is the entry's (linear page number) only while the entry maps
//   RAM; MMIO, a store into a code page and an empty entry hold
//   kTlbInvalid, which no page number equals. So a hit needs no separate
//   "is RAM" test.
// - An addend is the page's host address minus its linear address: the
//   host address of a linear address is the two added.
// - It is a cache of the Tlb, never more: Tlb writes it where it writes an
//   entry (fill) or drops one (the flushes), and a copy of a Tlb starts
//   with none of its own (an assigned one empties its own).
// - It lives in the low 2 GiB (MAP_32BIT) when it can, so translated code
//   names it by absolute 32-bit addresses; else the translator loads its
//   address from the Cpu.
#pragma once

#include <cstdint>
#include <cstring>

namespace hostvisor::emu {

constexpr unsigned kTlbBits = 8;
constexpr unsigned kTlbSize = 1u << kTlbBits;
constexpr uint64_t kTlbInvalid = ~0ull;

struct TlbMirror {
  uint64_t tag[2][2][kTlbSize];  // [user][write]
  uint64_t addend[2][2][kTlbSize];

  void clear() { std::memset(tag, 0xff, sizeof(tag)); }
};

// Maps a cleared mirror: in the low 2 GiB when `low` and it can, else
// anywhere. Never fails (throws std::bad_alloc when nothing can be mapped).
TlbMirror* map_tlb_mirror(bool low = true);
void unmap_tlb_mirror(TlbMirror* mirror);

// The Tlb's pointer to its mirror (none until the translator asks for
// one): a copy has none of its own, an assignment keeps its own and
// empties it, destruction unmaps it.
class TlbMirrorRef {
 public:
  TlbMirrorRef() = default;
  TlbMirrorRef(const TlbMirrorRef&) {}
  TlbMirrorRef& operator=(const TlbMirrorRef&) {
    if (p_) p_->clear();
    return *this;
  }
  ~TlbMirrorRef() { unmap_tlb_mirror(p_); }
  TlbMirror* get() const { return p_; }
  // The mirror, mapped (cleared) on first use.
  TlbMirror* attach(bool low = true) {
    if (!p_) p_ = map_tlb_mirror(low);
    return p_;
  }

 private:
  TlbMirror* p_ = nullptr;
};

}  // namespace hostvisor::emu
