#include "hv/emu/jit/translator.h"

#include <Zydis/Zydis.h>

#include <chrono>
#include <cstddef>
#include <cstdio>

#include "hv/emu/code_map.h"
#include "hv/emu/flags.h"
#include "hv/emu/jit/emitter.h"
#include "memory/guest_memory.h"

namespace hostvisor::emu::jit {
namespace {

constexpr unsigned kRax = 0, kRcx = 1, kRsp = 4, kRdi = 7;
// Callee-saved host registers the guest's values displace (SysV ABI).
constexpr unsigned kCalleeSaved[] = {3, 5, 12, 13, 14, 15};

// Translated code: uint64_t f(Cpu* cpu, uint64_t guest_arith_flags), returns
// the guest's RFLAGS after the instructions (only the arithmetic bits count).
using Entry = uint64_t (*)(Cpu*, uint64_t);

int32_t gpr_offset(unsigned reg) { return static_cast<int32_t>(offsetof(Cpu, gpr) + reg * sizeof(uint64_t)); }

// A general-purpose register the host code may hold the guest's value in:
// any but RSP, which stays the host's stack pointer.
bool plain_gpr(const Operand& o) { return o.reg < 16 && (o.reg != kRsp || o.high8); }

enum class FlagEffect { kNone, kAll, kSome };

// How a translatable instruction changes the arithmetic flags.
FlagEffect writes_flags(const Insn& insn) {
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_MOV:
    case ZYDIS_MNEMONIC_LEA: return FlagEffect::kNone;
    case ZYDIS_MNEMONIC_INC:
    case ZYDIS_MNEMONIC_DEC: return FlagEffect::kSome;
    case ZYDIS_MNEMONIC_SHL:
    case ZYDIS_MNEMONIC_SHR:
    case ZYDIS_MNEMONIC_SAR: {
      if (insn.nops < 2 || insn.op[1].kind != OpKind::kImm) return FlagEffect::kSome;  // by CL: 0 keeps them
      const uint64_t count = insn.imm & (insn.opsize == 8 ? 63 : 31);
      return count == 0 ? FlagEffect::kNone : FlagEffect::kAll;
    }
    default: return FlagEffect::kAll;
  }
}

}  // namespace

bool translatable(const Insn& insn) {
  switch (insn.mnemonic) {
    case ZYDIS_MNEMONIC_MOV:
    case ZYDIS_MNEMONIC_ADD:
    case ZYDIS_MNEMONIC_SUB:
    case ZYDIS_MNEMONIC_AND:
    case ZYDIS_MNEMONIC_OR:
    case ZYDIS_MNEMONIC_XOR:
    case ZYDIS_MNEMONIC_CMP:
    case ZYDIS_MNEMONIC_TEST:
    case ZYDIS_MNEMONIC_INC:
    case ZYDIS_MNEMONIC_DEC:
    case ZYDIS_MNEMONIC_LEA:
    case ZYDIS_MNEMONIC_SHL:
    case ZYDIS_MNEMONIC_SHR:
    case ZYDIS_MNEMONIC_SAR: break;
    default: return false;
  }
  if (insn.prefixes != 0 || insn.ends_block || insn.nops == 0) return false;
  for (unsigned i = 0; i < insn.nops; ++i) {
    const Operand& o = insn.op[i];
    switch (o.kind) {
      case OpKind::kReg:
        if (!plain_gpr(o)) return false;
        break;
      case OpKind::kImm: break;
      case OpKind::kMem: {
        // LEA computes an address without touching memory; RIP-relative
        // forms would compute the host's RIP, RSP-based ones the host's stack.
        if (insn.mnemonic != ZYDIS_MNEMONIC_LEA || i != 1) return false;
        const MemRef& m = insn.mem;
        if (m.base == kRipReg || m.base == kRsp || m.index == kRsp) return false;
        break;
      }
      default: return false;
    }
  }
  return true;
}

Result<std::unique_ptr<Translator>> Translator::create(size_t code_cache_bytes) {
  auto cache = CodeCache::create(code_cache_bytes);
  if (!cache) return cache.error();
  return std::unique_ptr<Translator>(new Translator(std::move(*cache)));
}

bool Translator::translate(Cpu& cpu, Block& block) {
  const auto started = std::chrono::steady_clock::now();
  block.native = nullptr;
  block.native_insns = 0;
  block.native_bytes = 0;
  // The bytes are read again from guest memory: only while they are still
  // the ones the block was decoded from.
  if (cpu.code_size != 8 || !cpu.memory) return false;
  if (cpu.code && cpu.code->generation(block.phys) != block.generation) return false;
  const uint8_t* page = cpu.memory->host_pointer(GuestAddress(block.phys & ~0xfffull), 0x1000);
  if (!page) return false;
  unsigned count = 0;
  uint64_t off = block.phys & 0xfff;
  const uint64_t start = off;
  uint16_t used = 0;       // the guest registers the instructions name
  bool flags_in = false;   // the result depends on the flags at entry
  bool flags_out = false;  // some instruction writes the flags
  for (const Insn& insn : block.insns) {
    if (!translatable(insn) || off + insn.len > 0x1000) break;
    for (unsigned i = 0; i < insn.nops; ++i) {
      if (insn.op[i].kind == OpKind::kReg) used |= 1u << insn.op[i].reg;
    }
    if (insn.mnemonic == ZYDIS_MNEMONIC_LEA) {
      if (insn.mem.base < 16) used |= 1u << insn.mem.base;
      if (insn.mem.index < 16) used |= 1u << insn.mem.index;
    }
    switch (writes_flags(insn)) {
      case FlagEffect::kNone: break;
      case FlagEffect::kAll: flags_out = true; break;
      case FlagEffect::kSome:  // INC/DEC keep CF; a shift by CL may keep all
        if (!flags_out) flags_in = true;
        flags_out = true;
        break;
    }
    off += insn.len;
    ++count;
  }
  if (count < kMinInsns) {
    // Too short to pay for entering and leaving host code.
    ++stats_.fallbacks;
    return false;
  }

  Emitter e;
  for (unsigned r : kCalleeSaved)
    if (used & (1u << r)) e.push(r);
  e.push(kRdi);  // the Cpu, for the exit
  if (flags_in) {
    // Only the guest's arithmetic flags enter the host's RFLAGS: TF, DF, AC
    // and the rest stay the host's.
    e.bytes({0x9c, 0x58});  // pushfq; pop rax
    e.bytes({0x48, 0x25});  // and rax, ~arith (sign-extended imm32)
    e.u32(static_cast<uint32_t>(~kArithFlags));
    e.bytes({0x48, 0x81, 0xe6});  // and rsi, arith
    e.u32(static_cast<uint32_t>(kArithFlags));
    e.bytes({0x48, 0x09, 0xf0, 0x50, 0x9d});  // or rax, rsi; push rax; popfq
  }
  for (unsigned r = 0; r < 16; ++r)
    if (r != kRdi && (used & (1u << r))) e.load(r, kRdi, gpr_offset(r));
  if (used & (1u << kRdi)) e.load(kRdi, kRdi, gpr_offset(kRdi));
  e.bytes(std::span(page + start, off - start));  // the guest's instructions, as they are
  e.bytes({0x9c, 0x50});                          // pushfq; push rax
  e.bytes({0x48, 0x8b, 0x44, 0x24, 0x10});        // mov rax, [rsp + 16]: the Cpu
  for (unsigned r = 1; r < 16; ++r)
    if (used & (1u << r)) e.store(kRax, gpr_offset(r), r);
  e.pop(kRcx);  // the guest's RAX
  if (used & 1u) e.store(kRax, gpr_offset(kRax), kRcx);
  e.pop(kRax);  // the guest's flags: the return value
  e.pop(kRdi);
  for (int i = static_cast<int>(std::size(kCalleeSaved)) - 1; i >= 0; --i)
    if (used & (1u << kCalleeSaved[i])) e.pop(kCalleeSaved[i]);
  e.bytes({0xc3});

  const uint8_t* code = cache_->add(e.code());
  if (!code) {
    cache_->flush();
    ++stats_.cache_flushes;
    code = cache_->add(e.code());
    if (!code) return false;  // larger than the whole cache: never translated
  }
  block.native = code;
  block.native_generation = cache_->generation();
  block.native_insns = static_cast<uint16_t>(count);
  block.native_bytes = static_cast<uint16_t>(off - start);
  block.native_flags = static_cast<uint8_t>((flags_in ? kNativeFlagsIn : 0) | (flags_out ? kNativeFlagsOut : 0));
  ++stats_.blocks_translated;
  stats_.translation_ns += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count());
  return true;
}

unsigned Translator::enter(Cpu& cpu, Block& block) {
  // The lazy flags are computed only for a translation that reads them, and
  // replaced only by one that writes them.
  const uint64_t in = (block.native_flags & kNativeFlagsIn) ? read_flags(cpu) : 0;
  const uint64_t flags = reinterpret_cast<Entry>(const_cast<uint8_t*>(block.native))(&cpu, in);
  if (block.native_flags & kNativeFlagsOut) set_arith_flags(cpu, flags);
  cpu.rip += block.native_bytes;  // 64-bit code: no wrap within a page
  ++stats_.entries;
  stats_.native_insns += block.native_insns;
  return block.native_insns;
}

std::string describe(const TranslatorStats& s) {
  char line[400];
  std::snprintf(line, sizeof(line),
                "jit: %llu blocks translated in %.3f ms, %llu entries running %llu instructions natively, "
                "%llu hot blocks not translatable, code cache %llu of %llu bytes (%llu flushes)",
                static_cast<unsigned long long>(s.blocks_translated), static_cast<double>(s.translation_ns) / 1e6,
                static_cast<unsigned long long>(s.entries), static_cast<unsigned long long>(s.native_insns),
                static_cast<unsigned long long>(s.fallbacks), static_cast<unsigned long long>(s.cache_used),
                static_cast<unsigned long long>(s.cache_capacity), static_cast<unsigned long long>(s.cache_flushes));
  return line;
}

TranslatorStats Translator::stats() const {
  TranslatorStats s = stats_;
  s.cache_used = cache_->used();
  s.cache_capacity = cache_->capacity();
  return s;
}

}  // namespace hostvisor::emu::jit
