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
  for (const Insn& insn : block.insns) {
    if (!translatable(insn) || off + insn.len > 0x1000) break;
    off += insn.len;
    ++count;
  }
  if (count == 0) {
    ++stats_.fallbacks;
    return false;
  }

  Emitter e;
  for (unsigned r : kCalleeSaved) e.push(r);
  e.push(kRdi);  // the Cpu, for the exit
  // Only the guest's arithmetic flags enter the host's RFLAGS: TF, DF, AC
  // and the rest stay the host's.
  e.bytes({0x9c, 0x58});                                         // pushfq; pop rax
  e.bytes({0x48, 0x25}), e.u32(static_cast<uint32_t>(~kArithFlags));  // and rax, ~arith
  e.bytes({0x48, 0x81, 0xe6}), e.u32(static_cast<uint32_t>(kArithFlags));  // and rsi, arith
  e.bytes({0x48, 0x09, 0xf0, 0x50, 0x9d});                       // or rax, rsi; push rax; popfq
  for (unsigned r = 0; r < 16; ++r)
    if (r != kRsp && r != kRdi) e.load(r, kRdi, gpr_offset(r));
  e.load(kRdi, kRdi, gpr_offset(kRdi));
  e.bytes(std::span(page + start, off - start));  // the guest's instructions, as they are
  e.bytes({0x9c, 0x50});                          // pushfq; push rax
  e.bytes({0x48, 0x8b, 0x44, 0x24, 0x10});        // mov rax, [rsp + 16]: the Cpu
  for (unsigned r = 1; r < 16; ++r)
    if (r != kRsp) e.store(kRax, gpr_offset(r), r);
  e.pop(kRcx);                                    // the guest's RAX
  e.store(kRax, gpr_offset(kRax), kRcx);
  e.pop(kRax);                                    // the guest's flags: the return value
  e.pop(kRdi);
  for (int i = static_cast<int>(std::size(kCalleeSaved)) - 1; i >= 0; --i) e.pop(kCalleeSaved[i]);
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
  ++stats_.blocks_translated;
  stats_.translation_ns += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count());
  return true;
}

unsigned Translator::enter(Cpu& cpu, Block& block) {
  const uint64_t flags = reinterpret_cast<Entry>(const_cast<uint8_t*>(block.native))(&cpu, read_flags(cpu));
  set_arith_flags(cpu, flags);
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
