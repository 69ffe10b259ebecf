# The control socket's framing and request parser on bytes from a client.
set(control_dir ${PROJECT_SOURCE_DIR}/src/control)
hv_fuzz(control_request
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/control_request.cpp ${control_dir}/control_protocol.cpp
  LIBS nlohmann_json::nlohmann_json)
