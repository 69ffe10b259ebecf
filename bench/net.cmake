# The user-mode NAT's VMM side without a guest: bench/net.bench.sh runs
# bench_net (a host-side driver pushing frames through SlirpBackend on the
# device event loop) and prints packets per second and CPU per packet.
add_executable(bench_net ${CMAKE_CURRENT_LIST_DIR}/net_bench.cpp ${PROJECT_SOURCE_DIR}/src/vmm/event_loop.cpp)
target_link_libraries(bench_net PRIVATE hv_net_testing)

# The internal network's VMM side without guests: bench/net.bench.sh runs
# bench_net_switch (64 KiB TSO frames from one virtio-net through two switch
# ports and the switch into another virtio-net) and prints Gbit/s.
add_executable(bench_net_switch ${CMAKE_CURRENT_LIST_DIR}/net_switch_bench.cpp)
target_link_libraries(bench_net_switch PRIVATE hv_virtio_net hv_net_testing CLI11::CLI11)
