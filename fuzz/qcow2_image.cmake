# qcow2 images as hostile input (block layer). The whole block library is
# built into the target so all of its parsing runs under ASan/UBSan.
find_package(ZLIB REQUIRED)
set(hv_block_fuzz_sources)
foreach(f block_device cache_mode host_file image_open io_engine iov qcow2_check qcow2_format qcow2_image
          qcow2_refcounts qcow2_snapshots qcow2_table_cache raw_image thread_pool_engine uring_engine)
  list(APPEND hv_block_fuzz_sources ${PROJECT_SOURCE_DIR}/src/block/${f}.cpp)
endforeach()
hv_fuzz(qcow2_image
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/qcow2_image.cpp ${hv_block_fuzz_sources}
  LIBS hv_base PkgConfig::URING ZLIB::ZLIB)
