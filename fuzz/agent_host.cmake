# The host's agent client on bytes from a hostile agent.
set(agent_dir ${PROJECT_SOURCE_DIR}/src/agent)
hv_fuzz(agent_host
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/agent_host.cpp ${agent_dir}/hostvisor_agent_client.cpp ${agent_dir}/agent_connection.cpp
          ${agent_dir}/protocol/frame.cpp ${agent_dir}/protocol/channel.cpp
  LIBS hv_base nlohmann_json::nlohmann_json)
