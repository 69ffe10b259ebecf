# The --net option parser (user-controlled text).
hv_fuzz(net_option
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/net_option.cpp ${PROJECT_SOURCE_DIR}/src/net/net_option.cpp
          ${PROJECT_SOURCE_DIR}/src/net/host_forward.cpp ${PROJECT_SOURCE_DIR}/src/net/ipv4_address.cpp
          ${PROJECT_SOURCE_DIR}/src/net/mac_address.cpp ${PROJECT_SOURCE_DIR}/src/net/switch/switch_paths.cpp
  LIBS hv_base)
