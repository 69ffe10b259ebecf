# Guest MIPS of the software CPU on small loops (ALU, memory, calls).
add_executable(emu_mips ${CMAKE_CURRENT_LIST_DIR}/emu_mips.cpp)
target_link_libraries(emu_mips PRIVATE hv_emu_testing)
