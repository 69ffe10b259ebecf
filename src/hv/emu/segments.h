// Segmentation: descriptor tables, loading segment registers with the
// protected-mode checks, and the mode (code/stack size, CPL) they imply.
#pragma once

#include <cstdint>

#include "hv/emu/cpu.h"

namespace hostvisor::emu {

// Recomputes code_size, stack_size, long_mode and mode64 from CR0/EFER/CS/SS.
void update_mode(Cpu& cpu);

// Copies the segment registers and descriptor-table registers of `sregs`
// into `cpu` (the hidden parts as given; no descriptor is read).
void load_segment_state(Cpu& cpu, const SystemRegisters& sregs);

// Reads the 8-byte descriptor for `selector` from the GDT or LDT; #GP(selector)
// (or `fault`) when it lies beyond the table limit.
uint64_t read_descriptor(Cpu& cpu, uint16_t selector, uint8_t fault = kGp);
// Reads the high half of a 16-byte system descriptor (long mode LDT/TSS).
uint64_t read_descriptor_high(Cpu& cpu, uint16_t selector);
Segment segment_from_descriptor(uint64_t desc, uint16_t selector);
// Sets the accessed bit of the descriptor in memory (loading marks it used).
void mark_descriptor_accessed(Cpu& cpu, uint16_t selector, uint64_t desc);

// MOV/POP to DS, ES, FS, GS, SS with every protected-mode check.
void load_segment(Cpu& cpu, uint8_t seg, uint16_t selector);

// Validates `selector` as the target of a far JMP/CALL/RET/IRET at the
// privilege `rpl_cpl` rules and returns the segment to load into CS.
// `returning` selects RET/IRET rules (RPL >= CPL allowed) over JMP/CALL.
Segment check_code_segment(Cpu& cpu, uint16_t selector, bool returning);
// Validates `selector` as the stack segment for privilege `cpl`.
Segment check_stack_segment(Cpu& cpu, uint16_t selector, unsigned cpl, uint8_t fault);

// Installs a checked CS (and the CPL it implies) and recomputes the mode.
void set_code_segment(Cpu& cpu, const Segment& cs, unsigned cpl);

// Returning to an outer privilege: data segments the new CPL may not use become null.
void null_inaccessible_segments(Cpu& cpu);

}  // namespace hostvisor::emu
