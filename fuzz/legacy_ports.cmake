# The CMOS RTC, i8042 and port 0x61 under random guest port I/O.
hv_fuzz(legacy_ports
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/legacy_ports.cpp ${PROJECT_SOURCE_DIR}/src/devices/legacy/cmos_rtc.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/legacy/i8042.cpp ${PROJECT_SOURCE_DIR}/src/devices/legacy/port_61.cpp
  LIBS hv_base)
