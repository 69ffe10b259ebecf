# The snapshot reader: header and state records from a file (user input).
set(snapshot_dir ${PROJECT_SOURCE_DIR}/src/snapshot)
hv_fuzz(snapshot_reader
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/snapshot_reader.cpp ${snapshot_dir}/snapshot_header.cpp
          ${snapshot_dir}/state_records.cpp ${snapshot_dir}/snapshot_reader.cpp ${snapshot_dir}/crc32c.cpp
          ${snapshot_dir}/memory_image.cpp ${snapshot_dir}/memory_checksums.cpp
  LIBS hv_memory hv_base)
