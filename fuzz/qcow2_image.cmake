# qcow2 images as hostile input (block layer). The whole block library is
# built into the target so all of its parsing runs under ASan/UBSan.
find_package(ZLIB REQUIRED)
get_property(hv_block_fuzz_sources GLOBAL PROPERTY HV_BLOCK_SOURCES)
hv_fuzz(qcow2_image
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/qcow2_image.cpp ${hv_block_fuzz_sources}
  LIBS hv_base hv_seccomp hv_uring ZLIB::ZLIB)
