# virtio-blk request parsing and serving on hostile descriptor tables and
# requests, against an in-memory disk on the default worker or a raw image through the block layer's asynchronous path. The block
# library is built into the target so that path runs under ASan/UBSan too.
find_package(ZLIB REQUIRED)
find_package(nlohmann_json REQUIRED)
set(virtio_dir ${PROJECT_SOURCE_DIR}/src/devices/virtio)
get_property(hv_blk_fuzz_block_sources GLOBAL PROPERTY HV_BLOCK_SOURCES)
hv_fuzz(virtio_blk_requests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/virtio_blk_requests.cpp ${virtio_dir}/blk/virtio_blk.cpp
          ${virtio_dir}/blk/virtio_blk_request.cpp ${virtio_dir}/virtio_device_core.cpp
          ${virtio_dir}/reschedule_timer.cpp ${virtio_dir}/virtqueue.cpp ${virtio_dir}/descriptor_chain.cpp
          ${hv_blk_fuzz_block_sources}
  LIBS hv_memory hv_base hv_seccomp hv_uring ZLIB::ZLIB nlohmann_json::nlohmann_json)
