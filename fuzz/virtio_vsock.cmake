# virtio-vsock's packet handling on hostile guest memory (tx packets of any
# header and length, rx and event buffers of any shape) with a live host
# listener behind it, and the CONNECT line parser of its unix-socket side.
set(virtio_dir ${PROJECT_SOURCE_DIR}/src/devices/virtio)
hv_fuzz(virtio_vsock
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/virtio_vsock.cpp ${virtio_dir}/vsock/virtio_vsock.cpp
          ${virtio_dir}/vsock/vsock_connect_line.cpp ${virtio_dir}/vsock/vsock_credit.cpp
          ${virtio_dir}/vsock/vsock_unix_socket.cpp ${virtio_dir}/virtio_device_core.cpp
          ${virtio_dir}/reschedule_timer.cpp ${virtio_dir}/virtqueue.cpp ${virtio_dir}/descriptor_chain.cpp
  LIBS hv_memory hv_base)
