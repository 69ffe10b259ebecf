# The FUSE server (src/fs/) on hostile requests: every opcode with random
# arguments and node IDs against a scratch share, checked afterwards for
# anything changed outside it.
set(fs_dir ${PROJECT_SOURCE_DIR}/src/fs)
hv_fuzz(fuse_server
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuse_server.cpp ${fs_dir}/fuse_server.cpp ${fs_dir}/node_table.cpp
  LIBS hv_base)
