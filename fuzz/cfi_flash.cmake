# The CFI flash's command interface (OVMF's variable store) from a hostile guest.
hv_fuzz(cfi_flash
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/cfi_flash.cpp ${PROJECT_SOURCE_DIR}/src/devices/flash/cfi_flash.cpp
  LIBS hv_base)
