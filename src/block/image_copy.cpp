#include "block/image_copy.h"

#include <algorithm>
#include <vector>

#include "block/qcow2/image.h"
#include "block/raw/image.h"

namespace hostvisor::block {

namespace {

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

}  // namespace

Result<void> convert_image(const std::string& src_path, const std::string& dst_path, const ConvertOptions& o) {
  if (o.compress && o.format != ImageFormat::kQcow2) {
    return Error(ErrorCode::kInvalidArgument, "--compress needs a qcow2 destination");
  }
  OpenOptions so;
  auto src = HV_TRY(open_image(src_path, so));
  uint64_t size = src->virtual_size();
  if (o.format == ImageFormat::kRaw) {
    HV_TRY(RawImage::create(dst_path, size));
  } else {
    Qcow2CreateOptions co;
    co.size = size;
    co.cluster_bits = o.cluster_bits;
    HV_TRY(Qcow2Image::create(dst_path, co));
  }
  OpenOptions dopt;
  dopt.format = o.format;
  dopt.writable = true;
  auto dst = HV_TRY(open_image(dst_path, dopt));
  auto* qdst = dynamic_cast<Qcow2Image*>(dst.get());
  // Work in cluster-sized pieces inside 1 MiB chunks; zero pieces are skipped.
  const uint64_t piece = o.format == ImageFormat::kQcow2 ? (1ULL << o.cluster_bits) : 64 * 1024;
  const uint64_t chunk = std::max<uint64_t>(piece, 1 << 20);
  std::vector<uint8_t> buf(chunk);
  for (uint64_t off = 0; off < size; off += chunk) {
    uint64_t n = std::min(chunk, size - off);
    HV_TRY(src->read(off, buf.data(), n));
    for (uint64_t p = 0; p < n; p += piece) {
      uint64_t m = std::min(piece, n - p);
      if (all_zero(&buf[p], m)) continue;
      if (o.compress && m == piece) {
        HV_TRY(qdst->write_compressed(off + p, &buf[p]));
      } else {
        HV_TRY(dst->write(off + p, &buf[p], m));
      }
    }
    if (o.progress) o.progress(off + n, size);
  }
  return dst->flush();
}

Result<uint64_t> commit_image(const std::string& overlay_path) {
  OpenOptions oo;
  oo.format = ImageFormat::kQcow2;
  oo.writable = true;  // emptied once its clusters are safely in the backing file
  auto overlay_dev = HV_TRY(open_image(overlay_path, oo));
  auto* overlay = dynamic_cast<Qcow2Image*>(overlay_dev.get());
  if (overlay == nullptr || overlay->backing() == nullptr) {
    return Error(ErrorCode::kInvalidArgument, overlay_path + " has no backing file to commit into");
  }
  // Commit empties the overlay's clusters: none may lie in its metadata.
  HV_TRY(overlay->check_references());
  const auto& h = overlay->header();
  std::string backing_path = resolve_backing_path(overlay_path, h.backing_file);
  OpenOptions bo;
  bo.writable = true;
  if (!h.backing_format.empty()) bo.format = HV_TRY(parse_image_format(h.backing_format));
  auto backing = HV_TRY(open_image(backing_path, bo));
  uint64_t cs = h.cluster_size();
  uint64_t size = std::min(overlay->virtual_size(), backing->virtual_size());
  if (overlay->virtual_size() > backing->virtual_size()) {
    return Error(ErrorCode::kUnsupported, "overlay is larger than its backing file; resize the backing file first");
  }
  std::vector<uint8_t> buf(cs);
  uint64_t committed = 0;
  for (uint64_t off = 0; off < size; off += cs) {
    if (!HV_TRY(overlay->is_allocated(off))) continue;
    uint64_t n = std::min(cs, size - off);
    HV_TRY(overlay->read(off, buf.data(), n));
    HV_TRY(backing->write(off, buf.data(), n));
    ++committed;
  }
  // The backing file holds the data durably before the overlay lets go of it.
  HV_TRY(backing->flush());
  HV_TRY(overlay->deallocate(0, size));
  HV_TRY(overlay->flush());
  return committed;
}

}  // namespace hostvisor::block
