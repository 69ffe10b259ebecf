# fw_cfg's register interface and DMA descriptors from a hostile guest.
hv_fuzz(fw_cfg
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/fw_cfg.cpp ${PROJECT_SOURCE_DIR}/src/devices/fw_cfg/fw_cfg.cpp
  LIBS hv_memory)
