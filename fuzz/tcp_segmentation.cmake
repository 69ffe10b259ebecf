# Software TCP segmentation (a guest's or a peer's TSO super-frames, cut for
# ports and backends that take plain frames) on arbitrary headers and frames.
hv_fuzz(tcp_segmentation
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/tcp_segmentation.cpp ${PROJECT_SOURCE_DIR}/src/net/tcp_segmentation.cpp
          ${PROJECT_SOURCE_DIR}/src/net/internet_checksum.cpp
  LIBS hv_base)
