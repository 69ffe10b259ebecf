# The DHCP server on a sequence of arbitrary frames from the segment.
set(net_dir ${PROJECT_SOURCE_DIR}/src/net)
hv_fuzz(dhcp_server
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/dhcp_server.cpp ${net_dir}/dhcp/dhcp_server.cpp ${net_dir}/dhcp/dhcp_message.cpp
          ${net_dir}/internet_checksum.cpp ${net_dir}/ipv4_address.cpp ${net_dir}/mac_address.cpp
  LIBS hv_base)
