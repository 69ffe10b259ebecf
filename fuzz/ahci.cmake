# The AHCI controller with an ATAPI CD-ROM on hostile guest memory: command
# lists, command tables, register FISes, ATAPI packets, PRDTs, and register
# writes; and the command parser on every slot.
find_package(ZLIB REQUIRED)
find_package(nlohmann_json REQUIRED)
set(ahci_dir ${PROJECT_SOURCE_DIR}/src/devices/ahci)
get_property(hv_ahci_fuzz_block_sources GLOBAL PROPERTY HV_BLOCK_SOURCES)
hv_fuzz(ahci
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/ahci.cpp ${ahci_dir}/ahci_command.cpp ${ahci_dir}/ahci_controller.cpp
          ${ahci_dir}/atapi_cdrom.cpp ${PROJECT_SOURCE_DIR}/src/devices/cdrom/mmc_cdrom.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/pci/msi.cpp ${PROJECT_SOURCE_DIR}/src/devices/pci/pci_config_space.cpp
          ${hv_ahci_fuzz_block_sources}
  LIBS hv_memory hv_base hv_seccomp hv_uring ZLIB::ZLIB nlohmann_json::nlohmann_json)
