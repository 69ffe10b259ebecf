# virtio-scsi with its MMC CD-ROM on hostile guest memory: random
# descriptor tables, request headers, LUNs and CDBs on the request queue,
# control requests, and config writes; and the CD-ROM's CDB parser on its
# own, as AHCI's ATAPI packets reach it.
find_package(ZLIB REQUIRED)
find_package(nlohmann_json REQUIRED)
set(virtio_dir ${PROJECT_SOURCE_DIR}/src/devices/virtio)
get_property(hv_scsi_fuzz_block_sources GLOBAL PROPERTY HV_BLOCK_SOURCES)
hv_fuzz(virtio_scsi_cdrom
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/virtio_scsi_cdrom.cpp ${virtio_dir}/scsi/virtio_scsi.cpp
          ${virtio_dir}/scsi/virtio_scsi_request.cpp ${PROJECT_SOURCE_DIR}/src/devices/cdrom/mmc_cdrom.cpp
          ${virtio_dir}/virtio_device_core.cpp ${virtio_dir}/reschedule_timer.cpp ${virtio_dir}/virtqueue.cpp
          ${virtio_dir}/descriptor_chain.cpp ${hv_scsi_fuzz_block_sources}
  LIBS hv_memory hv_base hv_seccomp hv_uring ZLIB::ZLIB nlohmann_json::nlohmann_json)
