// Connecting to a VM's control socket (--control) as soon as it serves.
#pragma once

#include <filesystem>
#include <optional>

#include "control/control_client.h"
#include "tests/linux/guest_console.h"

namespace hostvisor::testing {

// The socket is served before the machine is built (ops answer "busy"
// until then): this waits up to a minute for both, reading the VM's console
// meanwhile so its output never blocks it. nullopt when it never came.
std::optional<control::ControlClient> wait_for_control_socket(const std::filesystem::path& path, GuestConsole& vm);

}  // namespace hostvisor::testing
