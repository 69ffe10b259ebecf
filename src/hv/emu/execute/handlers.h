// Every instruction handler, by family (one .cpp per family in this folder).
// A handler executes one decoded instruction: it reads its operands, does all
// memory accesses (which may fault) and only then writes registers and flags;
// branches set cpu.next_rip.
#pragma once

#include "hv/emu/decoder.h"

namespace hostvisor::emu {

#define HV_EMU_HANDLER(name) void name(Cpu& cpu, const Insn& insn);

// alu.cpp
HV_EMU_HANDLER(h_add)
HV_EMU_HANDLER(h_or)
HV_EMU_HANDLER(h_adc)
HV_EMU_HANDLER(h_sbb)
HV_EMU_HANDLER(h_and)
HV_EMU_HANDLER(h_sub)
HV_EMU_HANDLER(h_xor)
HV_EMU_HANDLER(h_cmp)
HV_EMU_HANDLER(h_test)
HV_EMU_HANDLER(h_inc)
HV_EMU_HANDLER(h_dec)
HV_EMU_HANDLER(h_neg)
HV_EMU_HANDLER(h_not)

// shift.cpp
HV_EMU_HANDLER(h_rol)
HV_EMU_HANDLER(h_ror)
HV_EMU_HANDLER(h_rcl)
HV_EMU_HANDLER(h_rcr)
HV_EMU_HANDLER(h_shl)
HV_EMU_HANDLER(h_shr)
HV_EMU_HANDLER(h_sar)
HV_EMU_HANDLER(h_shld)
HV_EMU_HANDLER(h_shrd)

// muldiv.cpp
HV_EMU_HANDLER(h_mul)
HV_EMU_HANDLER(h_imul)
HV_EMU_HANDLER(h_div)
HV_EMU_HANDLER(h_idiv)

// bit.cpp
HV_EMU_HANDLER(h_bt)
HV_EMU_HANDLER(h_bts)
HV_EMU_HANDLER(h_btr)
HV_EMU_HANDLER(h_btc)
HV_EMU_HANDLER(h_bsf)
HV_EMU_HANDLER(h_bsr)
HV_EMU_HANDLER(h_popcnt)
HV_EMU_HANDLER(h_bswap)

// data.cpp
HV_EMU_HANDLER(h_mov)
HV_EMU_HANDLER(h_movzx)
HV_EMU_HANDLER(h_movsx)
HV_EMU_HANDLER(h_lea)
HV_EMU_HANDLER(h_xchg)
HV_EMU_HANDLER(h_cmpxchg)
HV_EMU_HANDLER(h_cmpxchg8b)
HV_EMU_HANDLER(h_xadd)
HV_EMU_HANDLER(h_cmovcc)
HV_EMU_HANDLER(h_setcc)
HV_EMU_HANDLER(h_cbw)
HV_EMU_HANDLER(h_cwd)
HV_EMU_HANDLER(h_lahf)
HV_EMU_HANDLER(h_sahf)
HV_EMU_HANDLER(h_clc)
HV_EMU_HANDLER(h_stc)
HV_EMU_HANDLER(h_cmc)
HV_EMU_HANDLER(h_cld)
HV_EMU_HANDLER(h_std)
HV_EMU_HANDLER(h_nop)
HV_EMU_HANDLER(h_xlat)
HV_EMU_HANDLER(h_mov_to_sreg)
HV_EMU_HANDLER(h_mov_from_sreg)

// control.cpp (stack and control flow)
HV_EMU_HANDLER(h_push)
HV_EMU_HANDLER(h_pop)
HV_EMU_HANDLER(h_pushf)
HV_EMU_HANDLER(h_popf)
HV_EMU_HANDLER(h_pusha)
HV_EMU_HANDLER(h_popa)
HV_EMU_HANDLER(h_call)
HV_EMU_HANDLER(h_ret)
HV_EMU_HANDLER(h_jmp)
HV_EMU_HANDLER(h_jcc)
HV_EMU_HANDLER(h_jcxz)
HV_EMU_HANDLER(h_loop)
HV_EMU_HANDLER(h_enter)
HV_EMU_HANDLER(h_leave)
HV_EMU_HANDLER(h_jmp_far)
HV_EMU_HANDLER(h_call_far)
HV_EMU_HANDLER(h_ret_far)
HV_EMU_HANDLER(h_int)
HV_EMU_HANDLER(h_int3)
HV_EMU_HANDLER(h_into)
HV_EMU_HANDLER(h_int1)
HV_EMU_HANDLER(h_iret)

// string.cpp
HV_EMU_HANDLER(h_movs)
HV_EMU_HANDLER(h_cmps)
HV_EMU_HANDLER(h_stos)
HV_EMU_HANDLER(h_lods)
HV_EMU_HANDLER(h_scas)
HV_EMU_HANDLER(h_ins)
HV_EMU_HANDLER(h_outs)

// system.cpp
HV_EMU_HANDLER(h_lgdt)
HV_EMU_HANDLER(h_lidt)
HV_EMU_HANDLER(h_sgdt)
HV_EMU_HANDLER(h_sidt)
HV_EMU_HANDLER(h_lldt)
HV_EMU_HANDLER(h_sldt)
HV_EMU_HANDLER(h_ltr)
HV_EMU_HANDLER(h_str)
HV_EMU_HANDLER(h_mov_cr)
HV_EMU_HANDLER(h_mov_dr)
HV_EMU_HANDLER(h_rdmsr)
HV_EMU_HANDLER(h_wrmsr)
HV_EMU_HANDLER(h_cpuid)
HV_EMU_HANDLER(h_rdtsc)
HV_EMU_HANDLER(h_rdtscp)
HV_EMU_HANDLER(h_in)
HV_EMU_HANDLER(h_out)
HV_EMU_HANDLER(h_cli)
HV_EMU_HANDLER(h_sti)
HV_EMU_HANDLER(h_hlt)
HV_EMU_HANDLER(h_invlpg)
HV_EMU_HANDLER(h_clts)
HV_EMU_HANDLER(h_lmsw)
HV_EMU_HANDLER(h_smsw)
HV_EMU_HANDLER(h_swapgs)
HV_EMU_HANDLER(h_syscall)
HV_EMU_HANDLER(h_sysret)
HV_EMU_HANDLER(h_ud)
HV_EMU_HANDLER(h_privileged_nop)

#undef HV_EMU_HANDLER

}  // namespace hostvisor::emu
