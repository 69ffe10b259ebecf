# The backend-neutral vCPU and irqchip state decoders (snapshot records).
set(hv_dir ${PROJECT_SOURCE_DIR}/src/hv)
hv_fuzz(hv_state
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/hv_state.cpp ${hv_dir}/vcpu_state.cpp ${hv_dir}/irqchip_state.cpp
          ${hv_dir}/lapic_state.cpp ${hv_dir}/cpu_state.cpp ${PROJECT_SOURCE_DIR}/src/base/state_codec.cpp
  LIBS hv_base)
