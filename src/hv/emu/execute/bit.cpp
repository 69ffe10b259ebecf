// Bit operations: BT BTS BTR BTC BSF BSR (TZCNT/LZCNT encodings run as
// BSF/BSR since BMI1/ABM are not advertised) POPCNT BSWAP.
#include "hv/emu/execute/handlers.h"
#include "hv/emu/execute/rmw.h"

namespace hostvisor::emu {
namespace {

enum class BitOp { kTest, kSet, kReset, kComplement };

template <BitOp op>
void bit_test(Cpu& cpu, const Insn& insn) {
  const unsigned size = insn.op[0].size, bits = size * 8;
  uint64_t offset = read_op(cpu, insn, 1);
  auto apply = [&](uint64_t v, unsigned bit) -> uint64_t {
    const uint64_t m = 1ull << bit;
    if constexpr (op == BitOp::kSet) return v | m;
    if constexpr (op == BitOp::kReset) return v & ~m;
    if constexpr (op == BitOp::kComplement) return v ^ m;
    return v;
  };
  uint64_t old;
  unsigned bit;
  if (insn.op[0].kind == OpKind::kMem && insn.op[1].kind == OpKind::kReg) {
    // A register bit offset is signed and may reach outside the operand.
    const int64_t signed_offset = sign_extend(offset, size);
    const int64_t unit = signed_offset >> __builtin_ctz(bits);
    bit = static_cast<unsigned>(offset & (bits - 1));
    const uint64_t addr = (effective_address(cpu, insn) + static_cast<uint64_t>(unit * static_cast<int64_t>(size))) &
                          address_mask(insn.addrsize);
    if constexpr (op == BitOp::kTest) {
      old = read_mem_n(cpu, insn.mem.seg, addr, size);
    } else {
      old = rmw_memory(cpu, insn, insn.mem.seg, addr, size, [&](uint64_t v) { return apply(v, bit); });
    }
  } else {
    bit = static_cast<unsigned>(offset & (bits - 1));
    if constexpr (op == BitOp::kTest) {
      old = read_op(cpu, insn, 0);
    } else {
      old = rmw(cpu, insn, [&](uint64_t v) { return apply(v, bit); });
    }
  }
  update_flags(cpu, kFlagCf, ((old >> bit) & 1) ? kFlagCf : 0);
}

}  // namespace

void h_bt(Cpu& cpu, const Insn& insn) { bit_test<BitOp::kTest>(cpu, insn); }
void h_bts(Cpu& cpu, const Insn& insn) { bit_test<BitOp::kSet>(cpu, insn); }
void h_btr(Cpu& cpu, const Insn& insn) { bit_test<BitOp::kReset>(cpu, insn); }
void h_btc(Cpu& cpu, const Insn& insn) { bit_test<BitOp::kComplement>(cpu, insn); }

void h_bsf(Cpu& cpu, const Insn& insn) {
  const uint64_t src = read_op(cpu, insn, 1);
  if (src == 0) {
    update_flags(cpu, kFlagZf, kFlagZf);  // destination unchanged, as Intel and AMD CPUs do
    return;
  }
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, static_cast<uint64_t>(__builtin_ctzll(src)));
  update_flags(cpu, kFlagZf, 0);
}

void h_bsr(Cpu& cpu, const Insn& insn) {
  const uint64_t src = read_op(cpu, insn, 1);
  if (src == 0) {
    update_flags(cpu, kFlagZf, kFlagZf);
    return;
  }
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, static_cast<uint64_t>(63 - __builtin_clzll(src)));
  update_flags(cpu, kFlagZf, 0);
}

void h_popcnt(Cpu& cpu, const Insn& insn) {
  const uint64_t src = read_op(cpu, insn, 1);
  set_reg(cpu, insn.op[0].reg, insn.op[0].size, static_cast<uint64_t>(__builtin_popcountll(src)));
  set_arith_flags(cpu, src == 0 ? kFlagZf : 0);
}

void h_bswap(Cpu& cpu, const Insn& insn) {
  const Operand& o = insn.op[0];
  uint64_t v = get_reg(cpu, o.reg, o.size);
  if (o.size == 8) {
    v = __builtin_bswap64(v);
  } else if (o.size == 4) {
    v = __builtin_bswap32(static_cast<uint32_t>(v));
  } else {
    v = 0;  // BSWAP of a 16-bit register is undefined; CPUs clear it
  }
  set_reg(cpu, o.reg, o.size, v);
}

}  // namespace hostvisor::emu
