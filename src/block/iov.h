// Helpers for scatter-gather lists (struct iovec).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace hostvisor::block {

size_t iov_bytes(std::span<const iovec> iov);
// The part of iov covering bytes [offset, offset+len).
std::vector<iovec> iov_slice(std::span<const iovec> iov, size_t offset, size_t len);
void iov_fill_zero(std::span<const iovec> iov);
void iov_copy_in(std::span<const iovec> iov, const uint8_t* src);  // src -> buffers
void iov_copy_out(std::span<const iovec> iov, uint8_t* dst);       // buffers -> dst

}  // namespace hostvisor::block
