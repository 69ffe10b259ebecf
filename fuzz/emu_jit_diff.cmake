# The translating tier against the interpreter on random loops of ALU,
# shift, LEA, load/store (across a page boundary, into a missing page) and
# branch instructions: state, memory, faults and counts must agree.
hv_fuzz(emu_jit_diff
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/emu_jit_diff.cpp ${hv_fuzz_emu_cpu_sources}
  LIBS hv_emu_platform hv_memory hv_cpu Zydis::Zydis)
