// Base64 (RFC 4648, standard alphabet, padded), as qemu-guest-agent carries
// file contents, exec input and exec output.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hostvisor::agent::qga {

std::string base64_encode(std::span<const uint8_t> bytes);
// Nothing if `text` is not base64 (a bad character, bad length or padding).
std::optional<std::vector<uint8_t>> base64_decode(std::string_view text);

}  // namespace hostvisor::agent::qga
