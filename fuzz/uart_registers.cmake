# The 16550A UART's guest-facing registers and host input path.
hv_fuzz(uart_registers
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/uart_registers.cpp ${PROJECT_SOURCE_DIR}/src/devices/legacy/serial_8250.cpp
  LIBS hv_base)
