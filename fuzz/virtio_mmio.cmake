# The virtio-mmio transport's registers and queue processing behind them.
hv_fuzz(virtio_mmio
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/virtio_mmio.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/descriptor_chain.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/virtqueue.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/reschedule_timer.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/virtio_device_core.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/virtio_transport_core.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/mmio/virtio_mmio_device.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/rng/virtio_rng.cpp
  LIBS hv_devices hv_memory hv_base)
