# The --fw-cfg option parser (user-controlled text).
hv_fuzz(fw_cfg_option
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/fw_cfg_option.cpp ${PROJECT_SOURCE_DIR}/src/cli/fw_cfg_option.cpp
  LIBS hv_base)
