# virtio-balloon's queues on hostile guest memory: inflate and deflate PFNs
# outside RAM, duplicated or pointing at the rings, huge counts, reports
# covering its own rings or another device's, statistics buffers of any shape,
# and the input as the balloon's snapshot record.
set(virtio_dir ${PROJECT_SOURCE_DIR}/src/devices/virtio)
hv_fuzz(virtio_balloon
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/virtio_balloon.cpp ${virtio_dir}/balloon/virtio_balloon.cpp
          ${virtio_dir}/virtio_device_core.cpp ${virtio_dir}/reschedule_timer.cpp ${virtio_dir}/virtqueue.cpp
          ${virtio_dir}/descriptor_chain.cpp
  LIBS hv_memory hv_base)
