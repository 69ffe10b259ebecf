# The MIPS benchmark kernel (bench/kernels): a freestanding PVH guest built
# like the test kernels in tests/guests (same flags, same runtime objects,
# same linker script, linked read-only from there). It is part of the normal
# build, so a kernel that no longer builds fails `make test`; its smoke test
# (bench_kernel_counts) runs each loop briefly and checks the instruction
# counts; bench/guest_mips.bench.sh times it against QEMU TCG.
set(hv_guests_src ${PROJECT_SOURCE_DIR}/tests/guests)
add_executable(hv_bench_mips_kernel
    ${CMAKE_CURRENT_LIST_DIR}/kernels/mips.c ${CMAKE_CURRENT_LIST_DIR}/kernels/mips_workloads.S
    ${hv_guests_src}/boot/entry_pvh.S $<TARGET_OBJECTS:hv_guest_runtime>)
target_include_directories(hv_bench_mips_kernel PRIVATE
    ${hv_guests_src}/runtime ${hv_guests_src}/include ${hv_guests_src}/boot)
target_compile_options(hv_bench_mips_kernel PRIVATE ${HV_GUEST_C_FLAGS})
target_link_options(hv_bench_mips_kernel PRIVATE
    ${HV_GUEST_LINK_FLAGS} -Wl,-T,${hv_guests_src}/boot/kernel.ld -Wl,-e,pvh_start32)
set_target_properties(hv_bench_mips_kernel PROPERTIES
    OUTPUT_NAME mips.pvh RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/kernels
    LINK_DEPENDS ${hv_guests_src}/boot/kernel.ld)

# Each workload for a few thousand iterations on the software CPU: the guest
# passes, prints its loop's instruction count, and the emulator's retired
# count grows by exactly that over a run with zero iterations.
add_test(NAME bench_kernel_counts
         COMMAND ${CMAKE_CURRENT_LIST_DIR}/check-mips-kernel.sh $<TARGET_FILE:hostvisor>
                 $<TARGET_FILE:hv_bench_mips_kernel>)
set_tests_properties(bench_kernel_counts PROPERTIES LABELS integration TIMEOUT 120)
