# virtio console's MULTIPORT control queues and named port on a scripted
# driver: any control message sequence, hostile rings, host-side calls in
# between, and the device's state decoder on hostile payloads.
set(virtio_dir ${PROJECT_SOURCE_DIR}/src/devices/virtio)
hv_fuzz(virtio_console_control
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/virtio_console_control.cpp ${virtio_dir}/console/virtio_console.cpp
          ${virtio_dir}/virtio_device_core.cpp ${virtio_dir}/reschedule_timer.cpp ${virtio_dir}/virtqueue.cpp
          ${virtio_dir}/descriptor_chain.cpp
  LIBS hv_memory hv_base)
