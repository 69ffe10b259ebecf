# Block layer benchmark: bench/block.bench.sh runs bench_block and `qemu-img
# bench` on the same raw and qcow2 files and prints the ratios.
add_executable(bench_block ${CMAKE_CURRENT_LIST_DIR}/block_bench.cpp)
target_link_libraries(bench_block PRIVATE hv_block CLI11::CLI11)
