# virtio-net's receive and transmit queues on hostile guest memory, against a
# scripted backend (offloads on or off, packets of any length and header),
# mergeable buffers, the rate limit and in-place receives on or off.
set(virtio_dir ${PROJECT_SOURCE_DIR}/src/devices/virtio)
hv_fuzz(virtio_net_queues
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/virtio_net_queues.cpp ${virtio_dir}/net/virtio_net.cpp
          ${virtio_dir}/virtio_device_core.cpp ${virtio_dir}/reschedule_timer.cpp ${virtio_dir}/virtqueue.cpp
          ${virtio_dir}/descriptor_chain.cpp ${PROJECT_SOURCE_DIR}/src/net/token_bucket.cpp
          ${PROJECT_SOURCE_DIR}/src/net/mac_address.cpp
  LIBS hv_memory hv_base)
