# The switch's framing and forwarding core on a hostile byte stream: a port
# (plain, or headered with any offloads) sends arbitrary bytes, read in
# chunks of any size, into a switch with an offload port, a plain port, a
# headered port without offloads and the DHCP server as a port.
set(net_dir ${PROJECT_SOURCE_DIR}/src/net)
hv_fuzz(switch_frames
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/switch_frames.cpp ${net_dir}/switch/stream_framing.cpp
          ${net_dir}/switch/ethernet_switch.cpp ${net_dir}/switch/mac_table.cpp ${net_dir}/switch/switch_control.cpp
          ${net_dir}/tcp_segmentation.cpp ${net_dir}/internet_checksum.cpp ${net_dir}/dhcp/dhcp_server.cpp
          ${net_dir}/dhcp/dhcp_message.cpp ${net_dir}/ipv4_address.cpp ${net_dir}/mac_address.cpp
  LIBS hv_base)
