# virtio-blk request parsing and serving on hostile descriptor tables and
# requests, against an in-memory disk.
set(virtio_dir ${PROJECT_SOURCE_DIR}/src/devices/virtio)
hv_fuzz(virtio_blk_requests
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/virtio_blk_requests.cpp ${virtio_dir}/blk/virtio_blk.cpp
          ${virtio_dir}/virtqueue.cpp ${virtio_dir}/descriptor_chain.cpp
  LIBS hv_block hv_memory hv_base)
