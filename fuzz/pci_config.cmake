# PCI config cycles (0xCF8/0xCFC, ECAM) and BAR accesses to a virtio-pci device.
hv_fuzz(pci_config
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/pci_config.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/msix.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/pci_bar_allocator.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/pci_bar_mapper.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/pci_config_io.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/pci_config_space.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/pci_ecam.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/pci_host_bridge.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/pci_root.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/descriptor_chain.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/virtqueue.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/reschedule_timer.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/virtio_device_core.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/virtio_transport_core.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/pci/virtio_pci_device.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/rng/virtio_rng.cpp
  LIBS hv_devices hv_memory hv_base)
