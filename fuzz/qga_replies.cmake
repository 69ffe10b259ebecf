# What a hostile qemu-guest-agent can send the host: the reply stream's
# framing (sentinel, lines, size limit) and every reply decoder.
set(qga_dir ${PROJECT_SOURCE_DIR}/src/agent/qga)
hv_fuzz(qga_replies
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/qga_replies.cpp ${qga_dir}/qga_reply_reader.cpp ${qga_dir}/qga_replies.cpp
          ${qga_dir}/base64.cpp
  LIBS hv_base nlohmann_json::nlohmann_json)
