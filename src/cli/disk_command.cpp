#include "cli/disk_command.h"

#include <sys/stat.h>
#include <time.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/progress_line.h"
#include "base/size.h"
#include "block/image_copy.h"
#include "block/image_open.h"
#include "block/qcow2/check.h"
#include "block/qcow2/image.h"
#include "block/raw/image.h"

namespace hostvisor::cli {

namespace {

using namespace hostvisor::block;

int fail(const Error& e) {
  std::fprintf(stderr, "hostvisor: disk: %s\n", e.message().c_str());
  return e.code() == ErrorCode::kInvalidArgument ? 2 : 1;
}

Result<std::unique_ptr<Qcow2Image>> open_qcow2(const std::string& path, bool writable) {
  OpenOptions o;
  o.writable = writable;
  o.format = HV_TRY(probe_format(path));
  if (o.format != ImageFormat::kQcow2) {
    return Error(ErrorCode::kInvalidArgument, path + " is a raw image; snapshots need qcow2");
  }
  o.open_backing = false;  // snapshot operations touch only this file
  auto dev = HV_TRY(open_image(path, o));
  std::unique_ptr<Qcow2Image> image(static_cast<Qcow2Image*>(dev.release()));
  // Snapshots take a reference to every data cluster: none may lie in metadata.
  if (writable) HV_TRY(image->check_references());
  return image;
}

struct CreateArgs {
  std::string file, format = "qcow2", backing, backing_format, size, cluster_size = "64K";
};

Result<void> do_create(const CreateArgs& a) {
  ImageFormat format = HV_TRY(parse_image_format(a.format));
  uint64_t size = 0;
  if (!a.size.empty()) size = HV_TRY(parse_size(a.size));
  if (format == ImageFormat::kRaw) {
    if (!a.backing.empty()) return Error(ErrorCode::kInvalidArgument, "raw images cannot have a backing file");
    if (a.size.empty()) return Error(ErrorCode::kInvalidArgument, "--size is required");
    return RawImage::create(a.file, size);
  }
  Qcow2CreateOptions o;
  uint64_t cs = HV_TRY(parse_size(a.cluster_size));
  if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)) != 0) {
    return Error(ErrorCode::kInvalidArgument, "--cluster-size must be a power of two from 512 to 2M");
  }
  o.cluster_bits = static_cast<uint32_t>(__builtin_ctzll(cs));
  if (!a.backing.empty()) {
    o.backing_file = a.backing;
    std::string resolved = resolve_backing_path(a.file, a.backing);
    OpenOptions bo;
    if (!a.backing_format.empty()) bo.format = HV_TRY(parse_image_format(a.backing_format));
    auto backing = open_image(resolved, bo);
    if (!backing.ok()) return backing.error().with_context("--backing " + a.backing);
    o.backing_format = a.backing_format.empty() ? (*backing)->format_name() : a.backing_format;
    if (a.size.empty()) size = (*backing)->virtual_size();
  } else if (a.size.empty()) {
    return Error(ErrorCode::kInvalidArgument, "--size is required without --backing");
  }
  o.size = size;
  return Qcow2Image::create(a.file, o);
}

Result<nlohmann::json> info_json(const std::string& path) {
  OpenOptions o;
  auto dev = HV_TRY(open_image(path, o));
  nlohmann::json j;
  j["filename"] = path;
  j["format"] = dev->format_name();
  j["virtual-size"] = dev->virtual_size();
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) j["actual-size"] = static_cast<uint64_t>(st.st_blocks) * 512;
  if (auto* q = dynamic_cast<Qcow2Image*>(dev.get())) {
    const auto& h = q->header();
    j["cluster-size"] = h.cluster_size();
    j["compat"] = h.version == 3 ? "1.1" : "0.10";
    j["refcount-bits"] = h.refcount_bits();
    j["lazy-refcounts"] = (h.compatible_features & qcow2::kCompatLazyRefcounts) != 0;
    j["dirty"] = (h.incompatible_features & qcow2::kIncompatDirty) != 0;
    if (!h.backing_file.empty()) {
      j["backing-filename"] = h.backing_file;
      j["full-backing-filename"] = resolve_backing_path(path, h.backing_file);
      if (!h.backing_format.empty()) j["backing-filename-format"] = h.backing_format;
    }
    nlohmann::json snaps = nlohmann::json::array();
    for (const auto& s : q->snapshots()) {
      snaps.push_back({{"id", s.id},
                       {"name", s.name},
                       {"date-sec", s.date_sec},
                       {"vm-state-size", s.vm_state_size},
                       {"disk-size", s.disk_size}});
    }
    j["snapshots"] = snaps;
  }
  return j;
}

void print_info(const nlohmann::json& j) {
  std::printf("image: %s\n", j["filename"].get<std::string>().c_str());
  std::printf("file format: %s\n", j["format"].get<std::string>().c_str());
  uint64_t vs = j["virtual-size"];
  std::printf("virtual size: %s (%llu bytes)\n", format_size(vs).c_str(), static_cast<unsigned long long>(vs));
  if (j.contains("actual-size")) std::printf("disk size: %s\n", format_size(j["actual-size"].get<uint64_t>()).c_str());
  if (j.contains("cluster-size")) {
    std::printf("cluster_size: %llu\n", static_cast<unsigned long long>(j["cluster-size"].get<uint64_t>()));
    std::printf("compat: %s\nrefcount bits: %u\nlazy refcounts: %s\n", j["compat"].get<std::string>().c_str(),
                j["refcount-bits"].get<unsigned>(), j["lazy-refcounts"].get<bool>() ? "true" : "false");
  }
  if (j.contains("backing-filename")) {
    std::printf("backing file: %s (actual path: %s)\n", j["backing-filename"].get<std::string>().c_str(),
                j["full-backing-filename"].get<std::string>().c_str());
    if (j.contains("backing-filename-format")) {
      std::printf("backing file format: %s\n", j["backing-filename-format"].get<std::string>().c_str());
    }
  }
  if (j.contains("snapshots") && !j["snapshots"].empty()) {
    std::printf("Snapshot list:\n%-6s %-20s %s\n", "ID", "TAG", "DATE");
    for (const auto& s : j["snapshots"]) {
      time_t t = s["date-sec"].get<uint32_t>();
      char date[64];
      strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", localtime(&t));
      std::printf("%-6s %-20s %s\n", s["id"].get<std::string>().c_str(), s["name"].get<std::string>().c_str(), date);
    }
  }
}

}  // namespace

void add_disk_command(CLI::App& app, int* exit_status) {
  CLI::App* disk = app.add_subcommand("disk", "Create and manage disk images (raw, qcow2)");
  disk->require_subcommand(1);

  // create
  auto create_args = std::make_shared<CreateArgs>();
  CLI::App* create = disk->add_subcommand("create", "Create a new disk image");
  create->add_option("--format,-f", create_args->format, "qcow2 (default) or raw");
  create->add_option("--backing,-b", create_args->backing, "backing file (relative to the new image's directory)");
  create->add_option("--backing-format", create_args->backing_format, "format of the backing file (probed if omitted)");
  create->add_option("--size,-s", create_args->size, "virtual size, e.g. 20G (default: the backing file's)");
  create->add_option("--cluster-size", create_args->cluster_size, "qcow2 cluster size (default 64K)");
  create->add_option("FILE", create_args->file, "image to create")->required();
  create->callback([create_args, exit_status] {
    auto r = do_create(*create_args);
    *exit_status = r.ok() ? 0 : fail(r.error());
  });

  // info
  auto info_file = std::make_shared<std::string>();
  auto info_as_json = std::make_shared<bool>(false);
  CLI::App* info = disk->add_subcommand("info", "Show an image's format, sizes, backing file and snapshots");
  info->add_flag("--json", *info_as_json, "print JSON");
  info->add_option("FILE", *info_file, "image")->required();
  info->callback([info_file, info_as_json, exit_status] {
    auto j = info_json(*info_file);
    if (!j.ok()) {
      *exit_status = fail(j.error());
      return;
    }
    if (*info_as_json) {
      std::printf("%s\n", j->dump(2).c_str());
    } else {
      print_info(*j);
    }
    *exit_status = 0;
  });

  // check
  auto check_file = std::make_shared<std::string>();
  auto check_repair = std::make_shared<bool>(false);
  auto check_json = std::make_shared<bool>(false);
  CLI::App* check = disk->add_subcommand("check", "Check a qcow2 image's metadata (exit 1 on corruption)");
  check->add_flag("--repair,-r", *check_repair, "rebuild refcounts (fixes leaks and refcount errors)");
  check->add_flag("--json", *check_json, "print JSON");
  check->add_option("FILE", *check_file, "image")->required();
  check->callback([check_file, check_repair, check_json, exit_status] {
    auto fmt = probe_format(*check_file);
    if (!fmt.ok()) {
      *exit_status = fail(fmt.error());
      return;
    }
    if (*fmt == ImageFormat::kRaw) {
      std::printf("%s: raw image, nothing to check\n", check_file->c_str());
      *exit_status = 0;
      return;
    }
    auto report = check_qcow2(*check_file, *check_repair);
    if (!report.ok()) {
      *exit_status = fail(report.error());
      return;
    }
    const CheckReport& r = *report;
    if (*check_json) {
      nlohmann::json j{{"filename", *check_file},
                       {"corruptions", r.corruptions},
                       {"leaks", r.leaks},
                       {"allocated-clusters", r.allocated_clusters},
                       {"total-clusters", r.total_clusters},
                       {"image-end-offset", r.image_end},
                       {"repaired", r.repaired},
                       {"messages", r.messages}};
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      for (const auto& m : r.messages) std::printf("%s\n", m.c_str());
      if (r.clean()) {
        std::printf("No errors were found on the image.\n");
      } else {
        if (r.corruptions)
          std::printf("%llu errors were found on the image.\n", static_cast<unsigned long long>(r.corruptions));
        if (r.leaks)
          std::printf("%llu leaked clusters were found on the image.\n", static_cast<unsigned long long>(r.leaks));
        if (r.repaired) std::printf("The image was repaired (refcounts rebuilt).\n");
      }
      std::printf("%llu/%llu clusters are allocated; image end offset: %llu\n",
                  static_cast<unsigned long long>(r.allocated_clusters),
                  static_cast<unsigned long long>(r.total_clusters), static_cast<unsigned long long>(r.image_end));
    }
    // Leaks waste space but lose nothing; corruption is a failure unless repaired.
    *exit_status = (r.corruptions > 0 && !r.repaired) ? 1 : 0;
  });

  // convert
  auto conv_src = std::make_shared<std::string>();
  auto conv_dst = std::make_shared<std::string>();
  auto conv_format = std::make_shared<std::string>("qcow2");
  auto conv_compress = std::make_shared<bool>(false);
  CLI::App* convert = disk->add_subcommand("convert", "Copy an image (and its backing chain) into a new image");
  convert->add_option("--format,-O", *conv_format, "destination format: qcow2 (default) or raw");
  convert->add_flag("--compress,-c", *conv_compress, "compress clusters (qcow2 only)");
  convert->add_option("SRC", *conv_src, "source image")->required();
  convert->add_option("DST", *conv_dst, "destination image (created)")->required();
  convert->callback([=] {
    auto fmt = parse_image_format(*conv_format);
    if (!fmt.ok() || *fmt == ImageFormat::kProbe) {
      *exit_status = fail(fmt.ok() ? Error(ErrorCode::kInvalidArgument, "--format must be raw or qcow2") : fmt.error());
      return;
    }
    ConvertOptions o;
    o.format = *fmt;
    o.compress = *conv_compress;
    ProgressLine line("converting " + *conv_src);  // on a terminal only
    o.progress = [&line](uint64_t done, uint64_t total) { line.update(done, total); };
    auto r = convert_image(*conv_src, *conv_dst, o);
    line.finish();
    *exit_status = r.ok() ? 0 : fail(r.error());
  });

  // snapshot
  CLI::App* snapshot = disk->add_subcommand("snapshot", "Internal snapshots of a qcow2 image");
  snapshot->require_subcommand(1);
  auto snap_file = std::make_shared<std::string>();
  auto snap_name = std::make_shared<std::string>();
  auto snap_json = std::make_shared<bool>(false);
  struct SnapOp {
    const char* name;
    const char* help;
  };
  for (SnapOp op :
       {SnapOp{"create", "Take a snapshot named NAME"}, SnapOp{"apply", "Revert the disk to snapshot NAME (or ID)"},
        SnapOp{"delete", "Delete snapshot NAME (or ID)"}}) {
    CLI::App* sub = snapshot->add_subcommand(op.name, op.help);
    sub->add_option("FILE", *snap_file, "qcow2 image")->required();
    sub->add_option("NAME", *snap_name, "snapshot name or ID")->required();
    std::string which = op.name;
    sub->callback([=] {
      auto img = open_qcow2(*snap_file, true);
      if (!img.ok()) {
        *exit_status = fail(img.error());
        return;
      }
      Result<void> r = which == "create"  ? (*img)->create_snapshot(*snap_name)
                       : which == "apply" ? (*img)->apply_snapshot(*snap_name)
                                          : (*img)->delete_snapshot(*snap_name);
      *exit_status = r.ok() ? 0 : fail(r.error());
    });
  }
  CLI::App* snap_list = snapshot->add_subcommand("list", "List snapshots");
  snap_list->add_option("FILE", *snap_file, "qcow2 image")->required();
  snap_list->add_flag("--json", *snap_json, "print JSON");
  snap_list->callback([=] {
    auto img = open_qcow2(*snap_file, false);
    if (!img.ok()) {
      *exit_status = fail(img.error());
      return;
    }
    nlohmann::json arr = nlohmann::json::array();
    if (!*snap_json) std::printf("%-6s %-20s %-12s %s\n", "ID", "TAG", "DISK SIZE", "DATE");
    for (const auto& s : (*img)->snapshots()) {
      if (*snap_json) {
        arr.push_back({{"id", s.id}, {"name", s.name}, {"date-sec", s.date_sec}, {"disk-size", s.disk_size}});
        continue;
      }
      time_t t = s.date_sec;
      char date[64];
      strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", localtime(&t));
      std::printf("%-6s %-20s %-12s %s\n", s.id.c_str(), s.name.c_str(), format_size(s.disk_size).c_str(), date);
    }
    if (*snap_json) std::printf("%s\n", arr.dump(2).c_str());
    *exit_status = 0;
  });

  // resize
  auto resize_file = std::make_shared<std::string>();
  auto resize_size = std::make_shared<std::string>();
  CLI::App* resize = disk->add_subcommand("resize", "Grow an image (raw images may also shrink)");
  resize->add_option("FILE", *resize_file, "image")->required();
  resize->add_option("SIZE", *resize_size, "new virtual size, or +N to grow by N")->required();
  resize->callback([=] {
    auto run = [&]() -> Result<void> {
      OpenOptions o;
      o.writable = true;
      o.open_backing = false;
      auto dev = HV_TRY(open_image(*resize_file, o));
      std::string text = *resize_size;
      bool relative = !text.empty() && text[0] == '+';
      uint64_t n = HV_TRY(parse_size(relative ? text.substr(1) : text));
      if (relative && n > UINT64_MAX - dev->virtual_size()) {
        return Error(ErrorCode::kInvalidArgument, "growing by " + text.substr(1) + " overflows the disk size");
      }
      uint64_t target = relative ? dev->virtual_size() + n : n;
      if (auto* q = dynamic_cast<Qcow2Image*>(dev.get())) {
        HV_TRY(q->check_references());
        return q->resize(target);
      }
      return static_cast<RawImage*>(dev.get())->resize(target);
    };
    auto r = run();
    *exit_status = r.ok() ? 0 : fail(r.error());
  });

  // commit
  auto commit_file = std::make_shared<std::string>();
  CLI::App* commit =
      disk->add_subcommand("commit", "Write an overlay's changes into its backing file and empty the overlay");
  commit->add_option("FILE", *commit_file, "qcow2 overlay")->required();
  commit->callback([=] {
    auto r = commit_image(*commit_file);
    if (!r.ok()) {
      *exit_status = fail(r.error());
      return;
    }
    std::printf("Committed %llu clusters into the backing file.\n", static_cast<unsigned long long>(*r));
    *exit_status = 0;
  });
}

}  // namespace hostvisor::cli
