# Split virtqueue chain walking and used-ring updates on hostile guest memory.
hv_fuzz(virtqueue
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/virtqueue.cpp ${PROJECT_SOURCE_DIR}/src/devices/virtio/virtqueue.cpp
          ${PROJECT_SOURCE_DIR}/src/devices/virtio/descriptor_chain.cpp
  LIBS hv_memory)
