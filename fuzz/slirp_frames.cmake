# Frames a guest hands to the user-mode NAT: arbitrary virtio-net headers and
# Ethernet frames into a SlirpBackend that cannot reach outside the process
# (restrict=on, no forwards, no DNS forwarding). libslirp itself is the
# distribution's build, uninstrumented; the backend around it is.
hv_fuzz(slirp_frames
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/slirp_frames.cpp ${PROJECT_SOURCE_DIR}/src/net/slirp/slirp_backend.cpp
          ${PROJECT_SOURCE_DIR}/src/net/slirp/slirp_library.cpp
          ${PROJECT_SOURCE_DIR}/src/net/packet_queue.cpp ${PROJECT_SOURCE_DIR}/src/net/internet_checksum.cpp
          ${PROJECT_SOURCE_DIR}/src/net/tcp_segmentation.cpp
          ${PROJECT_SOURCE_DIR}/src/net/ipv4_address.cpp ${PROJECT_SOURCE_DIR}/src/net/host_forward.cpp
  LIBS hv_base hv_slirp_headers)
