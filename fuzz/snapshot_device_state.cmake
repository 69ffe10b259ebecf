# Snapshot records of the VM generation ID and the PCI host bridge.
hv_fuzz(snapshot_device_state
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/snapshot_device_state.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/acpi/vm_generation_id.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/pci_config_space.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/pci_host_bridge.cpp
          ${PROJECT_SOURCE_DIR}/src/base/state_codec.cpp
  LIBS hv_memory hv_base)
