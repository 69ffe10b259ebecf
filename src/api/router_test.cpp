#include "api/router.h"

#include <gtest/gtest.h>

#include "api/testing/recording_service.h"

namespace hostvisor::api {
namespace {

using nlohmann::json;
using testing::RecordingService;

ApiResponse send(VmService& service, std::string method, std::string target, std::string body = "") {
  return handle_request(service, ApiRequest{std::move(method), std::move(target), std::move(body)});
}

json body_of(const ApiResponse& response) { return json::parse(response.body); }

TEST(Router, RoutesEachEndpointToItsCall) {
  RecordingService service;
  struct Case {
    const char* method;
    const char* target;
    const char* body;
    unsigned status;
    const char* call;
  };
  const Case cases[] = {
      {"GET", "/v1/vms", "", 200, "list_vms"},
      {"POST", "/v1/vms", R"({"name":"dev"})", 201, "create_vm dev"},
      {"GET", "/v1/vms/dev", "", 200, "get_vm dev"},
      {"PATCH", "/v1/vms/dev", R"({"cpus":2})", 200, "update_vm dev"},
      {"DELETE", "/v1/vms/dev", "", 204, "delete_vm dev 0"},
      {"DELETE", "/v1/vms/dev?force=true", "", 204, "delete_vm dev 1"},
      {"POST", "/v1/vms/dev/start", "", 200, "act dev 0 30"},
      {"POST", "/v1/vms/dev/stop", R"({"timeout_seconds":5})", 200, "act dev 1 5"},
      {"POST", "/v1/vms/dev/suspend", "", 200, "act dev 6 30"},
      {"GET", "/v1/vms/dev/snapshots", "", 200, "list_snapshots dev"},
      {"POST", "/v1/vms/dev/snapshots", R"({"name":"s1"})", 201, "create_snapshot dev s1"},
      {"POST", "/v1/vms/dev/snapshots/s1/restore", "", 200, "restore_snapshot dev s1"},
      {"POST", "/v1/vms/dev/snapshots/s1/restore", R"({"verify":true})", 200, "restore_snapshot dev s1 verify"},
      {"POST", "/v1/vms/dev/snapshots/s1/restore", R"({"verify":false})", 200, "restore_snapshot dev s1"},
      {"DELETE", "/v1/vms/dev/snapshots/s1", "", 204, "delete_snapshot dev s1"},
      {"POST", "/v1/vms/dev/clone", R"({"name":"dev2","snapshot":"s1"})", 201, "clone_vm dev dev2 s1"},
      {"POST", "/v1/vms/dev/exec", R"({"argv":["uname","-a"]})", 200, "exec dev uname"},
      {"GET", "/v1/vms/dev/files?path=%2Fetc%2Fhostname", "", 200, "read_file dev /etc/hostname"},
      {"PUT", "/v1/vms/dev/files?path=/tmp/x&mode=0600", "data", 204, "write_file dev /tmp/x 384 4"},
      {"POST", "/v1/vms/dev/port-forwards", R"({"host_port":8080,"guest_port":80})", 201, "add_port_forward dev 8080"},
      {"DELETE", "/v1/vms/dev/port-forwards", R"({"host_port":8080})", 204, "remove_port_forward dev 8080"},
      {"PUT", "/v1/vms/dev/balloon", R"({"bytes":1048576})", 200, "set_balloon dev 1048576"},
      {"GET", "/v1/vms/dev/balloon", "", 200, "balloon dev"},
      {"GET", "/v1/vms/dev/metrics", "", 200, "metrics dev"},
      {"GET", "/v1/vms/dev/logs?which=console", "", 200, "read_log dev 1"},
      {"GET", "/v1/networks", "", 200, "list_networks"},
      {"POST", "/v1/networks", R"({"name":"lab","dhcp":"10.5.0.0/24"})", 201, "create_network lab 10.5.0.0/24"},
      {"DELETE", "/v1/networks/lab", "", 204, "delete_network lab"},
  };
  for (const Case& c : cases) {
    service.calls.clear();
    const ApiResponse response = send(service, c.method, c.target, c.body);
    EXPECT_EQ(response.status, c.status) << c.method << " " << c.target << ": " << response.body;
    ASSERT_EQ(service.calls.size(), 1u) << c.method << " " << c.target;
    EXPECT_EQ(service.calls[0], c.call);
  }
}

TEST(Router, StreamsAreHandedToTheServer) {
  RecordingService service;
  EXPECT_EQ(send(service, "GET", "/v1/events").kind, ApiResponse::Kind::kEventStream);
  const ApiResponse console = send(service, "GET", "/v1/vms/dev/console");
  EXPECT_EQ(console.kind, ApiResponse::Kind::kConsole);
  EXPECT_EQ(console.vm, "dev");
  const ApiResponse exec = send(service, "GET", "/v1/vms/dev/exec");
  EXPECT_EQ(exec.kind, ApiResponse::Kind::kExecStream);
  EXPECT_EQ(exec.vm, "dev");
}

TEST(Router, TheExecStreamsFirstMessageIsChecked) {
  auto stream = parse_exec_stream_request(R"({"argv":["/bin/sh","-l"],"terminal":true,"rows":40,"cols":120})");
  ASSERT_TRUE(stream) << stream.error().message();
  EXPECT_TRUE(stream->terminal);
  EXPECT_EQ(stream->rows, 40);
  EXPECT_EQ(stream->cols, 120);
  EXPECT_FALSE(parse_exec_stream_request(R"({"argv":[]})"));
  EXPECT_FALSE(parse_exec_stream_request(R"({"argv":["sh"],"terminal":"yes"})"));
  EXPECT_FALSE(parse_exec_stream_request(R"({"argv":["sh"],"rows":99999})"));
  EXPECT_FALSE(parse_exec_stream_request("not json"));
}

TEST(Router, ErrorsAreJsonWithAStatusACodeAndAMessage) {
  RecordingService service;
  struct Case {
    const char* method;
    const char* target;
    const char* body;
    unsigned status;
    const char* code;
  };
  const Case cases[] = {
      {"GET", "/v2/vms", "", 404, "not-found"},
      {"GET", "/v1/nothing", "", 404, "not-found"},
      {"PUT", "/v1/vms", "", 405, "method-not-allowed"},
      {"POST", "/v1/vms", "{not json", 400, "invalid-argument"},
      {"POST", "/v1/vms", "[1,2]", 400, "invalid-argument"},
      {"POST", "/v1/vms", "", 400, "invalid-argument"},
      {"POST", "/v1/vms", R"({"name":"../etc"})", 400, "invalid-argument"},
      {"GET", "/v1/vms/..%2Fetc", "", 400, "invalid-argument"},
      {"GET", "/v1/vms/Bad", "", 400, "invalid-argument"},
      {"POST", "/v1/vms/dev/snapshots/s1/restore", R"({"verify":"yes"})", 400, "invalid-argument"},
      {"GET", "/v1/vms/dev/files?path=%zz", "", 400, "invalid-argument"},
      {"GET", "/v1/vms/dev/files?path=relative", "", 400, "invalid-argument"},
      {"PUT", "/v1/vms/dev/files?path=/x&mode=999", "", 400, "invalid-argument"},
      {"POST", "/v1/vms/dev/exec", R"({"argv":[]})", 400, "invalid-argument"},
      {"POST", "/v1/vms/dev/exec", R"({"argv":["x"],"env":["noequals"]})", 400, "invalid-argument"},
      {"POST", "/v1/vms/dev/port-forwards", R"({"host_port":70000})", 400, "invalid-argument"},
      {"POST", "/v1/vms/dev/port-forwards", R"({"host_port":80,"proto":"sctp"})", 400, "invalid-argument"},
      {"POST", "/v1/vms/dev/stop", R"({"timeout_seconds":-1})", 400, "invalid-argument"},
      {"GET", "/v1/vms/dev/start", "", 405, "method-not-allowed"},
      {"POST", "/v1/vms/dev/clone", R"({"name":"a b"})", 400, "invalid-argument"},
      {"GET", "/v1/vms/dev/logs?which=secrets", "", 400, "invalid-argument"},
  };
  for (const Case& c : cases) {
    service.calls.clear();
    const ApiResponse response = send(service, c.method, c.target, c.body);
    EXPECT_EQ(response.status, c.status) << c.method << " " << c.target;
    const json body = body_of(response);
    EXPECT_EQ(body["error"]["code"], c.code) << c.method << " " << c.target;
    EXPECT_FALSE(body["error"]["message"].get<std::string>().empty());
    EXPECT_TRUE(service.calls.empty()) << c.method << " " << c.target << " reached the service";
  }
}

TEST(Router, ServiceErrorsKeepTheirMessageAndMapToAStatus) {
  RecordingService service;
  service.fail_with = Error(ErrorCode::kNotFound, "no VM named ghost");
  ApiResponse response = send(service, "GET", "/v1/vms/ghost");
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(body_of(response)["error"]["message"], "no VM named ghost");
  service.fail_with = Error(ErrorCode::kBusy, "VM ghost is not running; start it first");
  response = send(service, "POST", "/v1/vms/ghost/pause");
  EXPECT_EQ(response.status, 409);
  EXPECT_EQ(body_of(response)["error"]["code"], "conflict");
}

}  // namespace
}  // namespace hostvisor::api
