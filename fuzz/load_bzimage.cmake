# The Linux bzImage loader on hostile kernel files.
hv_fuzz(load_bzimage
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/load_bzimage.cpp ${PROJECT_SOURCE_DIR}/src/arch/x86_64/bzimage.cpp
          ${PROJECT_SOURCE_DIR}/src/arch/x86_64/layout.cpp ${PROJECT_SOURCE_DIR}/src/arch/x86_64/e820.cpp ${PROJECT_SOURCE_DIR}/src/arch/x86_64/boot_cpu.cpp ${PROJECT_SOURCE_DIR}/src/arch/x86_64/boot_payload.cpp
  LIBS hv_memory hv_cpu)
