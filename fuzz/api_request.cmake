# The daemon API's routing and request parsing on arbitrary requests.
hv_fuzz(api_request
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/api_request.cpp ${PROJECT_SOURCE_DIR}/src/api/router.cpp
          ${PROJECT_SOURCE_DIR}/src/api/event_bus.cpp ${PROJECT_SOURCE_DIR}/src/daemon/vm_config.cpp
          ${PROJECT_SOURCE_DIR}/src/daemon/names.cpp ${PROJECT_SOURCE_DIR}/src/block/disk_serial.cpp
          ${PROJECT_SOURCE_DIR}/guest/default_guest/share_mounts.cpp
  LIBS hv_base nlohmann_json::nlohmann_json)
