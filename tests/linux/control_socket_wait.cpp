#include "tests/linux/control_socket_wait.h"

#include <chrono>

namespace hostvisor::testing {

std::optional<control::ControlClient> wait_for_control_socket(const std::filesystem::path& path, GuestConsole& vm) {
  using namespace std::chrono_literals;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto client = control::ControlClient::connect(path.string())) {
      auto info = client->call("info");
      if (info || info.error().code() != ErrorCode::kBusy) return std::move(*client);
    }
    vm.read_for(100ms);
  }
  return std::nullopt;
}

}  // namespace hostvisor::testing
