# The user-mode NAT's VMM side without a guest: bench/net.bench.sh runs
# bench_net (a host-side driver pushing frames through SlirpBackend on the
# device event loop) and prints packets per second and CPU per packet; and
# a TCP stream of 64 KiB TSO frames through virtio-net into a tap.
add_executable(bench_net ${CMAKE_CURRENT_LIST_DIR}/net_bench.cpp ${PROJECT_SOURCE_DIR}/src/vmm/event_loop.cpp)
target_link_libraries(bench_net PRIVATE hv_net_testing hv_virtio_net)
