#include "hv/emu/testing/test_machine.h"

#include <cstring>
#include <stdexcept>

#include "hv/emu/flags.h"
#include "hv/emu/mmu.h"
#include "hv/emu/segments.h"

namespace hostvisor::emu::testing {
namespace {

uint64_t descriptor(uint32_t base, uint32_t limit, uint8_t type, bool s, uint8_t dpl, bool l, bool db, bool g) {
  uint64_t d = (limit & 0xffff) | (static_cast<uint64_t>(base & 0xffffff) << 16);
  d |= static_cast<uint64_t>(type & 0xf) << 40;
  d |= static_cast<uint64_t>(s) << 44;
  d |= static_cast<uint64_t>(dpl & 3) << 45;
  d |= 1ull << 47;  // present
  d |= static_cast<uint64_t>((limit >> 16) & 0xf) << 48;
  d |= static_cast<uint64_t>(l) << 53;
  d |= static_cast<uint64_t>(db) << 54;
  d |= static_cast<uint64_t>(g) << 55;
  d |= static_cast<uint64_t>(base >> 24) << 56;
  return d;
}

}  // namespace

TestMachine::TestMachine() {
  auto mem = GuestMemory::create({{GuestAddress(0), kRamSize}});
  if (!mem) throw std::runtime_error(mem.error().message());
  memory_ = std::move(*mem);
  code_.resize(kRamSize);

  // Page tables: PML4[0] -> PDPT[0] -> PD; PD[0] -> PT (4 KiB pages), PD[1] a 2 MiB page.
  write_value<uint64_t>(kPml4, kPdpt | 7);
  write_value<uint64_t>(kPdpt, kPd | 7);
  write_value<uint64_t>(kPd, kPt | 7);
  write_value<uint64_t>(kPd + 8, (2ull << 20) | 0x87);
  for (uint64_t i = 0; i < 512; ++i) write_value<uint64_t>(kPt + i * 8, (i << 12) | 3);  // supervisor, writable
  // User-accessible window: the data area's pages and the 2 MiB page are U=1 (set per test as needed).
  for (uint64_t a = kData; a < (2ull << 20); a += 0x1000) write_value<uint64_t>(kPt + (a >> 12) * 8, a | 7);

  // GDT.
  const uint64_t gdt[] = {
      0,
      descriptor(0, 0xfffff, 0xb, true, 0, true, false, true),     // 0x08 code64
      descriptor(0, 0xfffff, 0x3, true, 0, false, true, true),     // 0x10 data
      descriptor(0, 0xfffff, 0xb, true, 0, false, true, true),     // 0x18 code32
      descriptor(0, 0xfffff, 0xb, true, 3, true, false, true),     // 0x20 user code64
      descriptor(0, 0xfffff, 0x3, true, 3, false, true, true),     // 0x28 user data
      descriptor(kTss, 0x67, 0x9, false, 0, false, false, false),  // 0x30 TSS (low half)
      0,                                                           // 0x38 TSS (high half)
      descriptor(0, 0xffff, 0xb, true, 0, false, false, false),    // 0x40 code16
      descriptor(0, 0xffff, 0x3, true, 0, false, false, false),    // 0x48 data16
  };
  write(kGdt, std::span(reinterpret_cast<const uint8_t*>(gdt), sizeof(gdt)));

  // IDT: every vector is a 64-bit interrupt gate to its HLT stub; #DF uses IST1.
  for (uint64_t v = 0; v < 256; ++v) {
    const uint64_t target = kVectorStubs + v * 8;
    uint64_t lo = (target & 0xffff) | (static_cast<uint64_t>(kCode64) << 16) | (0xeull << 40) | (1ull << 47) |
                  (3ull << 45) | ((target >> 16) << 48);
    if (v == kDf) lo |= 1ull << 32;  // IST1
    write_value<uint64_t>(kIdt + v * 16, lo);
    write_value<uint64_t>(kIdt + v * 16 + 8, target >> 32);
    write_value<uint8_t>(target, 0xf4);  // HLT
  }
  // TSS: RSP0 and IST1.
  write_value<uint64_t>(kTss + 4, kStackTop);
  write_value<uint64_t>(kTss + 0x24, kIstStackTop);

  cpu_.memory = &memory_;
  cpu_.code = &code_;
  reset_cpu(cpu_);
  Segment cs = segment_from_descriptor(gdt[1], kCode64);
  Segment ds = segment_from_descriptor(gdt[2], kData64);
  cpu_.seg[kCs] = cs;
  cpu_.seg[kSs] = cpu_.seg[kDs] = cpu_.seg[kEs] = cpu_.seg[kFs] = cpu_.seg[kGs] = ds;
  cpu_.tr = segment_from_descriptor(gdt[6], kTssSel);
  cpu_.tr.type = 0xb;  // busy
  cpu_.gdt = {kGdt, static_cast<uint16_t>(sizeof(gdt) - 1)};
  cpu_.idt = {kIdt, 256 * 16 - 1};
  cpu_.cr0 = x86::kCr0Pe | x86::kCr0Pg | x86::kCr0Wp | x86::kCr0Et | x86::kCr0Ne;
  cpu_.cr3 = kPml4;
  cpu_.cr4 = x86::kCr4Pae | (1ull << 9) | (1ull << 10);  // PAE, OSFXSR, OSXMMEXCPT
  cpu_.efer = x86::kEferLme | x86::kEferLma | x86::kEferNxe | x86::kEferSce;
  cpu_.cpl = 0;
  cpu_.gpr[4] = kStackTop;
  cpu_.rip = kCode;
  update_mode(cpu_);
  tlb_flush(cpu_);
  interpreter_ = std::make_unique<Interpreter>(cpu_);
  // The reference tier, whatever the default or HOSTVISOR_EMU_TIER: the
  // emulator's unit and differential tests check the interpreter; a test of
  // the translator gives its machine one (Interpreter::set_translator).
  interpreter_->set_translator(nullptr);
}

void TestMachine::write(uint64_t address, std::span<const uint8_t> bytes) {
  (void)memory_.write(GuestAddress(address), bytes);
  code_.invalidate_range(address, bytes.size());
}

void TestMachine::load_code(std::span<const uint8_t> bytes, uint64_t address) {
  write(address, bytes);
  cpu_.rip = address;
}

int TestMachine::vector_taken() const {
  // The stub's HLT has executed: RIP is one past it.
  const uint64_t rip = cpu_.rip - 1;
  if (rip < kVectorStubs || rip >= kVectorStubs + 256 * 8 || (rip - kVectorStubs) % 8) return -1;
  return static_cast<int>((rip - kVectorStubs) / 8);
}

uint64_t TestMachine::pte(uint64_t address) { return read<uint64_t>(kPt + (address >> 12) * 8); }

void TestMachine::set_pte(uint64_t address, uint64_t value) {
  write_value<uint64_t>(kPt + (address >> 12) * 8, value);
  tlb_flush(cpu_);
}

void TestMachine::enter_real_mode(uint16_t ip) {
  reset_cpu(cpu_);
  cpu_.seg[kCs].selector = 0;
  cpu_.seg[kCs].base = 0;
  cpu_.rip = ip;
  cpu_.gpr[4] = 0x7000;
  cpu_.idt = {0, 0x3ff};
  update_mode(cpu_);
}

}  // namespace hostvisor::emu::testing
