# The web console's screening of request headers (Host, Origin, cookie,
# Authorization, query token) on arbitrary values.
hv_fuzz(web_request
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/web_request.cpp ${PROJECT_SOURCE_DIR}/src/web/web_request_policy.cpp
          ${PROJECT_SOURCE_DIR}/src/web/web_token.cpp
  LIBS hv_base)
