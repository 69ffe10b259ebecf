// Whole-image operations built on BlockDevice: convert (copy into a new
// image, optionally compressed) and commit (merge an overlay into its backing file).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "block/image_open.h"

namespace hostvisor::block {

struct ConvertOptions {
  ImageFormat format = ImageFormat::kQcow2;  // of the destination
  bool compress = false;                     // qcow2 only: compressed clusters
  uint32_t cluster_bits = 16;
  // Called after each chunk with the bytes read so far and the virtual size.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

// Copies the guest-visible contents of src (with its backing chain) into a new
// image dst. All-zero regions are left unallocated.
Result<void> convert_image(const std::string& src, const std::string& dst, const ConvertOptions& options);

// Writes every cluster the qcow2 overlay holds into its backing file, then
// empties the overlay (it reads the same, now through the backing file).
// Returns the number of clusters committed.
Result<uint64_t> commit_image(const std::string& overlay);

}  // namespace hostvisor::block
