# The translating tier against the interpreter on random loops of ALU,
# shift, LEA, load/store (across a page boundary, into a missing page) and
# branch instructions: state, memory, faults and counts must agree.
set(emu_dir ${PROJECT_SOURCE_DIR}/src/hv/emu)
hv_fuzz(emu_jit_diff
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/emu_jit_diff.cpp
          ${emu_dir}/cpuid.cpp ${emu_dir}/decoder.cpp ${emu_dir}/interpreter.cpp ${emu_dir}/interrupts.cpp
          ${emu_dir}/mmu.cpp ${emu_dir}/msr.cpp ${emu_dir}/segments.cpp
          ${emu_dir}/execute/alu.cpp ${emu_dir}/execute/bit.cpp ${emu_dir}/execute/control.cpp
          ${emu_dir}/execute/data.cpp ${emu_dir}/execute/fast_forms.cpp ${emu_dir}/execute/muldiv.cpp ${emu_dir}/execute/shift.cpp
          ${emu_dir}/execute/sse.cpp ${emu_dir}/execute/sse_float.cpp ${emu_dir}/execute/string.cpp
          ${emu_dir}/execute/system.cpp ${emu_dir}/execute/x87.cpp ${emu_dir}/execute/x87_host.cpp
          ${emu_dir}/jit/code_cache.cpp ${emu_dir}/jit/tier_options.cpp ${emu_dir}/jit/translator.cpp
          ${emu_dir}/testing/test_machine.cpp
  LIBS hv_emu_platform hv_memory hv_cpu Zydis::Zydis)
