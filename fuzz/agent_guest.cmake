# The agent's frame decoder and request parsers on bytes from a hostile host.
set(agent_dir ${PROJECT_SOURCE_DIR}/src/agent)
hv_fuzz(agent_guest
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/agent_guest.cpp ${agent_dir}/guest/exec_session.cpp ${agent_dir}/guest/file_transfer.cpp
          ${agent_dir}/guest/session.cpp ${agent_dir}/guest/system_info.cpp ${agent_dir}/guest/system_control.cpp
          ${agent_dir}/protocol/frame.cpp ${agent_dir}/protocol/channel.cpp
  LIBS hv_base nlohmann_json::nlohmann_json)
