// Opening disk images by path: format detection, and for qcow2 the backing
// chain (relative names resolved against the overlay's directory, loops and
// missing files reported with the whole chain).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "block/block_device.h"
#include "block/cache_mode.h"
#include "block/io_engine.h"
#include "block/qcow2/table_budget.h"

namespace hostvisor::block {

enum class ImageFormat { kProbe, kRaw, kQcow2 };

const char* image_format_name(ImageFormat format);
Result<ImageFormat> parse_image_format(const std::string& text);

struct OpenOptions {
  ImageFormat format = ImageFormat::kProbe;
  bool writable = false;
  CacheMode cache = CacheMode::kWriteback;
  EngineKind engine = EngineKind::kAuto;
  unsigned queue_depth = 128;
  bool open_backing = true;  // false: qcow2 clusters not in the file read as zeros
  // Bytes of qcow2 L2 tables and refcount blocks the disk keeps cached, for
  // the image and its whole backing chain together.
  uint64_t qcow2_l2_cache_bytes = qcow2::kDefaultL2CacheBytes;
  uint64_t qcow2_refcount_cache_bytes = qcow2::kDefaultRefcountCacheBytes;
};

// Reads the first bytes of the file: qcow2 by its magic, raw otherwise.
Result<ImageFormat> probe_format(const std::string& path);

Result<std::unique_ptr<BlockDevice>> open_image(const std::string& path, const OpenOptions& options);

// A backing file name as stored in an image, made usable from the current directory.
std::string resolve_backing_path(const std::string& image_path, const std::string& backing_name);

// The files an image reads: `path`, then each backing file down the chain
// (as open_image would open them), read from the qcow2 headers only. The
// sandbox allows exactly these.
Result<std::vector<std::string>> backing_chain(const std::string& path);

}  // namespace hostvisor::block
