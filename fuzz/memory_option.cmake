# The --memory option parser (user-controlled text).
hv_fuzz(memory_option
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/memory_option.cpp ${PROJECT_SOURCE_DIR}/src/cli/memory_option.cpp
          ${PROJECT_SOURCE_DIR}/src/memory/memory_backing.cpp
  LIBS hv_base)
