# The emu backend's LAPIC, IOAPIC, PIC and PIT under random guest MMIO, port
# I/O, MSR accesses, device lines, MSIs and time passing.
set(emu_platform_dir ${PROJECT_SOURCE_DIR}/src/hv/emu/platform)
hv_fuzz(emu_platform_mmio
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/emu_platform_mmio.cpp
          ${emu_platform_dir}/apic_bus.cpp ${emu_platform_dir}/emu_interrupt_controller.cpp
          ${emu_platform_dir}/emu_platform.cpp ${emu_platform_dir}/io_apic.cpp ${emu_platform_dir}/local_apic.cpp
          ${emu_platform_dir}/msi.cpp ${emu_platform_dir}/pic.cpp ${emu_platform_dir}/pit.cpp
          ${emu_platform_dir}/platform_clock.cpp ${emu_platform_dir}/platform_devices.cpp
          ${emu_platform_dir}/platform_timers.cpp
  LIBS hv_devices hv_cpu hv_base hv_seccomp)
