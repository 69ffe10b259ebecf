# What a VM on a rootless host-only network controls: the frames the host
# gateway's filter judges, and the control frames (Forward, ForwardResult,
# Welcome, ...) its switch decodes.
set(net_dir ${PROJECT_SOURCE_DIR}/src/net)
hv_fuzz(host_gateway_input
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/host_gateway_input.cpp ${net_dir}/host_only/gateway_filter.cpp
          ${net_dir}/switch/switch_control.cpp ${net_dir}/ipv4_address.cpp ${net_dir}/mac_address.cpp
  LIBS hv_base)
