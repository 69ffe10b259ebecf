#include "hv/emu/segments.h"

#include "hv/emu/mmu.h"

namespace hostvisor::emu {

void load_segment_state(Cpu& cpu, const SystemRegisters& sregs) {
  const auto segments = segment_registers(sregs);
  for (size_t i = 0; i < segments.size(); ++i) cpu.seg[i] = *segments[i];
  cpu.tr = sregs.tr;
  cpu.ldt = sregs.ldt;
  cpu.gdt = sregs.gdt;
  cpu.idt = sregs.idt;
}

void update_mode(Cpu& cpu) {
  cpu.long_mode = (cpu.efer & x86::kEferLma) != 0;
  if (!(cpu.cr0 & x86::kCr0Pe)) {
    cpu.code_size = 2;
    cpu.stack_size = cpu.seg[kSs].db ? 4 : 2;
    cpu.mode64 = false;
    cpu.cpl = 0;
    return;
  }
  cpu.mode64 = cpu.long_mode && cpu.seg[kCs].l;
  cpu.code_size = cpu.mode64 ? 8 : (cpu.seg[kCs].db ? 4 : 2);
  cpu.stack_size = cpu.mode64 ? 8 : (cpu.seg[kSs].db ? 4 : 2);
}

uint64_t read_descriptor(Cpu& cpu, uint16_t selector, uint8_t fault) {
  uint64_t base, limit;
  if (selector & 4) {
    if (cpu.ldt.unusable || !cpu.ldt.present) raise(fault, selector & 0xfffc);
    base = cpu.ldt.base;
    limit = cpu.ldt.limit;
  } else {
    base = cpu.gdt.base;
    limit = cpu.gdt.limit;
  }
  uint64_t offset = selector & 0xfff8;
  if (offset + 7 > limit) raise(fault, selector & 0xfffc);
  uint64_t lin = base + offset;
  if (!cpu.long_mode) lin &= 0xffffffff;
  return read_linear<uint64_t>(cpu, lin, false);
}

uint64_t read_descriptor_high(Cpu& cpu, uint16_t selector) {
  uint64_t offset = (selector & 0xfff8) + 8;
  if (offset + 7 > cpu.gdt.limit) raise(kGp, selector & 0xfffc);
  return read_linear<uint64_t>(cpu, cpu.gdt.base + offset, false);
}

Segment segment_from_descriptor(uint64_t d, uint16_t selector) {
  Segment s;
  s.selector = selector;
  s.base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((d & 0xffff) | (((d >> 48) & 0xf) << 16));
  s.g = (d >> 55) & 1;
  s.limit = s.g ? (limit << 12) | 0xfff : limit;
  s.type = (d >> 40) & 0xf;
  s.s = (d >> 44) & 1;
  s.dpl = (d >> 45) & 3;
  s.present = (d >> 47) & 1;
  s.avl = (d >> 52) & 1;
  s.l = (d >> 53) & 1;
  s.db = (d >> 54) & 1;
  s.unusable = false;
  return s;
}

void mark_descriptor_accessed(Cpu& cpu, uint16_t selector, uint64_t desc) {
  if (desc & (1ull << 40)) return;
  uint64_t base = (selector & 4) ? cpu.ldt.base : cpu.gdt.base;
  uint64_t lin = base + (selector & 0xfff8) + 5;
  if (!cpu.long_mode) lin &= 0xffffffff;
  write_linear<uint8_t>(cpu, lin, static_cast<uint8_t>((desc >> 40) | 1), false);
}

namespace {
Segment null_segment(uint16_t selector) {
  Segment s;
  s.selector = selector;
  s.base = 0;
  s.limit = 0;
  s.present = false;
  s.unusable = true;
  s.type = 0;
  s.s = true;
  s.db = false;
  return s;
}
}  // namespace

Segment check_stack_segment(Cpu& cpu, uint16_t selector, unsigned cpl, uint8_t fault) {
  if ((selector & 0xfffc) == 0) {
    if (cpu.mode64 && cpl != 3 && (selector & 3) == cpl) {
      Segment s = null_segment(selector);
      s.dpl = static_cast<uint8_t>(cpl);
      return s;
    }
    raise(fault, 0);
  }
  uint64_t d = read_descriptor(cpu, selector, fault);
  Segment s = segment_from_descriptor(d, selector);
  if ((selector & 3) != cpl || s.dpl != cpl || !s.s || (s.type & 0xa) != 0x2) raise(fault, selector & 0xfffc);
  if (!s.present) raise(kStackFault, selector & 0xfffc);
  mark_descriptor_accessed(cpu, selector, d);
  s.type |= 1;
  return s;
}

void load_segment(Cpu& cpu, uint8_t seg, uint16_t selector) {
  if (!(cpu.cr0 & x86::kCr0Pe) || (cpu.rflags & kFlagVm)) {
    // Real mode: only selector and base change (the rest of the cache stays, as on hardware).
    Segment& s = cpu.seg[seg];
    s.selector = selector;
    s.base = static_cast<uint64_t>(selector) << 4;
    s.present = true;
    s.unusable = false;
    if (seg == kSs) update_mode(cpu);
    return;
  }
  if (seg == kSs) {
    cpu.seg[kSs] = check_stack_segment(cpu, selector, cpu.cpl, kGp);
    update_mode(cpu);
    return;
  }
  if ((selector & 0xfffc) == 0) {
    cpu.seg[seg] = null_segment(selector);
    return;
  }
  uint64_t d = read_descriptor(cpu, selector);
  Segment s = segment_from_descriptor(d, selector);
  const bool code = s.type & 8;
  if (!s.s || (code && !(s.type & 2))) raise(kGp, selector & 0xfffc);
  const bool conforming_code = code && (s.type & 4);
  if (!conforming_code && ((selector & 3u) > s.dpl || cpu.cpl > s.dpl)) raise(kGp, selector & 0xfffc);
  if (!s.present) raise(kNp, selector & 0xfffc);
  mark_descriptor_accessed(cpu, selector, d);
  s.type |= 1;
  cpu.seg[seg] = s;
}

Segment check_code_segment(Cpu& cpu, uint16_t selector, bool returning) {
  if ((selector & 0xfffc) == 0) raise(kGp, 0);
  uint64_t d = read_descriptor(cpu, selector);
  Segment s = segment_from_descriptor(d, selector);
  if (!s.s || !(s.type & 8)) raise(kGp, selector & 0xfffc);  // call gates and task gates are not supported
  const unsigned rpl = selector & 3;
  const bool conforming = s.type & 4;
  if (returning) {
    if (rpl < cpu.cpl) raise(kGp, selector & 0xfffc);
    if (conforming ? s.dpl > rpl : s.dpl != rpl) raise(kGp, selector & 0xfffc);
  } else if (conforming) {
    if (s.dpl > cpu.cpl) raise(kGp, selector & 0xfffc);
  } else if (rpl > cpu.cpl || s.dpl != cpu.cpl) {
    raise(kGp, selector & 0xfffc);
  }
  if (!s.present) raise(kNp, selector & 0xfffc);
  if (cpu.long_mode && s.l && s.db) raise(kGp, selector & 0xfffc);
  mark_descriptor_accessed(cpu, selector, d);
  s.type |= 1;
  return s;
}

void set_code_segment(Cpu& cpu, const Segment& cs, unsigned cpl) {
  cpu.seg[kCs] = cs;
  cpu.seg[kCs].selector = static_cast<uint16_t>((cs.selector & 0xfffc) | cpl);
  cpu.cpl = static_cast<uint8_t>(cpl);
  update_mode(cpu);
  cpu.stop_block = true;
}

void null_inaccessible_segments(Cpu& cpu) {
  for (uint8_t seg : {kEs, kDs, kFs, kGs}) {
    Segment& s = cpu.seg[seg];
    const bool conforming_code = (s.type & 0xc) == 0xc;
    if (!s.unusable && !conforming_code && s.dpl < cpu.cpl) s = null_segment(0);
  }
}

}  // namespace hostvisor::emu
