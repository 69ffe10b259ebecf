# The software CPU on random guest code: random bytes run as instructions in a
# small machine (64-bit, 32-bit compatibility or real mode); the CPU must raise
# architectural exceptions and never crash or misbehave under ASan/UBSan.
hv_fuzz(emu_execute
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/emu_execute.cpp ${hv_fuzz_emu_cpu_sources}
  LIBS hv_emu_platform hv_memory hv_cpu Zydis::Zydis)
