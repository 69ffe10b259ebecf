#include "block/image_open.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <vector>

#include "base/fd.h"
#include "block/qcow2/format.h"
#include "block/qcow2/image.h"
#include "block/raw/image.h"

namespace hostvisor::block {

namespace {

// Chains deeper than this are almost certainly a mistake and would exhaust file descriptors.
constexpr size_t kMaxChainDepth = 256;

std::string canonical(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) return path;
  return buf;
}

Result<std::unique_ptr<BlockDevice>> open_one(const std::string& path, const OpenOptions& options, ImageFormat format,
                                              std::vector<std::string>& chain, std::set<std::string>& seen,
                                              const qcow2::CacheBudget& budget) {
  const bool probed = format == ImageFormat::kProbe;
  if (probed) format = HV_TRY(probe_format(path));
  HostFileOptions fo;
  fo.writable = options.writable;
  fo.cache = options.cache;
  fo.engine = options.engine;
  fo.queue_depth = chain.size() <= 1 ? options.queue_depth : 8;
  auto file = HV_TRY(HostFile::open(path, fo));
  if (format == ImageFormat::kRaw) {
    auto raw = HV_TRY(RawImage::open(std::move(file)));
    if (probed) raw->set_format_probed();
    return std::unique_ptr<BlockDevice>(std::move(raw));
  }
  auto img = HV_TRY(Qcow2Image::open(std::move(file), budget));
  const qcow2::Header& h = img->header();
  if (options.open_backing && !h.backing_file.empty()) {
    std::string backing = resolve_backing_path(path, h.backing_file);
    std::string where = "backing file '" + h.backing_file + "' of " + path;
    if (access(backing.c_str(), F_OK) != 0) {
      return Error(ErrorCode::kNotFound, where + " is missing (looked for " + backing + ")");
    }
    std::string key = canonical(backing);
    if (seen.count(key)) {
      std::string loop;
      for (const auto& c : chain) loop += c + " -> ";
      return Error(ErrorCode::kCorrupt, where + " forms a loop: " + loop + backing);
    }
    if (chain.size() >= kMaxChainDepth) {
      return Error(ErrorCode::kOutOfRange,
                   where + ": backing chain is deeper than " + std::to_string(kMaxChainDepth) + " images");
    }
    ImageFormat bf = ImageFormat::kProbe;
    if (!h.backing_format.empty()) {
      auto parsed = parse_image_format(h.backing_format);
      if (!parsed.ok()) return parsed.error().with_context(where);
      bf = *parsed;
    }
    seen.insert(key);
    chain.push_back(backing);
    OpenOptions bo = options;
    bo.writable = false;
    auto dev = open_one(backing, bo, bf, chain, seen, budget);
    if (!dev.ok()) return dev.error();
    img->set_backing(std::move(dev).value());
  }
  return std::unique_ptr<BlockDevice>(std::move(img));
}

}  // namespace

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::kProbe: return "probe";
    case ImageFormat::kRaw: return "raw";
    case ImageFormat::kQcow2: return "qcow2";
  }
  return "?";
}

Result<ImageFormat> parse_image_format(const std::string& text) {
  if (text == "raw") return ImageFormat::kRaw;
  if (text == "qcow2") return ImageFormat::kQcow2;
  if (text.empty() || text == "auto") return ImageFormat::kProbe;
  return Error(ErrorCode::kInvalidArgument, "unknown image format '" + text + "' (use raw or qcow2)");
}

Result<ImageFormat> probe_format(const std::string& path) {
  auto fd = HV_TRY(open_file(path, O_RDONLY));
  uint8_t magic[4] = {};
  ssize_t n = pread(fd.get(), magic, sizeof magic, 0);
  if (n < 0) return Error::from_errno(path + ": reading the header");
  if (n == 4 && qcow2::load_be32(magic) == qcow2::kMagic) return ImageFormat::kQcow2;
  return ImageFormat::kRaw;
}

std::string resolve_backing_path(const std::string& image_path, const std::string& name) {
  if (name.empty() || name[0] == '/') return name;
  auto slash = image_path.rfind('/');
  if (slash == std::string::npos) return name;
  return image_path.substr(0, slash + 1) + name;
}

Result<std::vector<std::string>> backing_chain(const std::string& path) {
  std::vector<std::string> chain{path};
  std::set<std::string> seen{canonical(path)};
  for (std::string image = path;;) {
    if (HV_TRY(probe_format(image)) != ImageFormat::kQcow2) return chain;
    UniqueFd fd(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return Error::from_errno(image);
    const off_t size = ::lseek(fd.get(), 0, SEEK_END);
    if (size < 0) return Error::from_errno(image);
    // The header lives in the first cluster: read the largest one there can be.
    std::vector<uint8_t> first(std::min<uint64_t>(static_cast<uint64_t>(size), 1ULL << qcow2::kMaxClusterBits));
    const ssize_t n = ::pread(fd.get(), first.data(), first.size(), 0);
    if (n != static_cast<ssize_t>(first.size())) return Error::from_errno(image + ": reading the header");
    const qcow2::Header header = HV_TRY(qcow2::parse_header(first, static_cast<uint64_t>(size)));
    if (header.backing_file.empty()) return chain;
    const std::string backing = resolve_backing_path(image, header.backing_file);
    if (!seen.insert(canonical(backing)).second)
      return Error(ErrorCode::kCorrupt, "backing file '" + header.backing_file + "' of " + image + " forms a loop");
    if (chain.size() >= kMaxChainDepth)
      return Error(ErrorCode::kOutOfRange,
                   path + ": backing chain is deeper than " + std::to_string(kMaxChainDepth) + " images");
    chain.push_back(backing);
    image = backing;
  }
}

Result<std::unique_ptr<BlockDevice>> open_image(const std::string& path, const OpenOptions& options) {
  std::vector<std::string> chain{path};
  std::set<std::string> seen{canonical(path)};
  // One cache budget for the whole chain: its depth does not multiply it.
  const qcow2::CacheBudget budget =
      qcow2::CacheBudget::for_one_disk(options.qcow2_l2_cache_bytes, options.qcow2_refcount_cache_bytes);
  auto dev = open_one(path, options, options.format, chain, seen, budget);
  if (!dev.ok()) {
    // Errors from deeper in the chain already name their file.
    const std::string& m = dev.error().message();
    if (m.rfind(path, 0) == 0) return dev.error();
    return dev.error().with_context(path);
  }
  return dev;
}

}  // namespace hostvisor::block
