# The multiboot v1 kernel loader on hostile kernel files.
hv_fuzz(load_multiboot
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/load_multiboot.cpp ${PROJECT_SOURCE_DIR}/src/arch/x86_64/multiboot.cpp ${PROJECT_SOURCE_DIR}/src/arch/x86_64/elf_reader.cpp
          ${PROJECT_SOURCE_DIR}/src/arch/x86_64/layout.cpp ${PROJECT_SOURCE_DIR}/src/arch/x86_64/e820.cpp ${PROJECT_SOURCE_DIR}/src/arch/x86_64/boot_cpu.cpp ${PROJECT_SOURCE_DIR}/src/arch/x86_64/boot_payload.cpp
  LIBS hv_memory hv_cpu)
