#include "cli/snapshot_command.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "snapshot/snapshot_reader.h"

namespace hostvisor::cli {

namespace {

// Exit status 0: whole; 1: damaged (one line says what and where).
int verify(const std::string& dir) {
  const auto start = std::chrono::steady_clock::now();
  auto snapshot = snapshot::Snapshot::open(dir);
  if (!snapshot) {
    std::fprintf(stderr, "hostvisor: %s\n", snapshot.error().message().c_str());
    return 1;
  }
  if (auto verified = snapshot->verify_memory(); !verified) {
    std::fprintf(stderr, "hostvisor: %s\n", verified.error().message().c_str());
    return 1;
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const auto& header = snapshot->header();
  if (!snapshot->has_memory_checksums()) {
    std::printf(
        "snapshot %s: header and %zu state records are whole; its memory file was not checked (format %u "
        "has no memory checksums; a snapshot taken by this hostvisor has them)\n",
        dir.c_str(), snapshot->records().size(), header.format_version);
    return 0;
  }
  std::printf(
      "snapshot %s: whole (header, %zu state records, %zu memory chunks of %llu MiB, %zu frozen disks) in "
      "%.1f ms\n",
      dir.c_str(), snapshot->records().size(), header.memory_crcs.size(),
      static_cast<unsigned long long>(header.memory_chunk_size >> 20), header.disks.size(), ms);
  return 0;
}

}  // namespace

void add_snapshot_command(CLI::App& app, int* exit_status) {
  auto* cmd = app.add_subcommand("snapshot", "Work with VM snapshot directories");
  cmd->require_subcommand(1);
  auto dir = std::make_shared<std::string>();
  auto* check = cmd->add_subcommand(
      "verify",
      "Check a snapshot without restoring it: its header, state records and frozen disks, and every chunk of its "
      "memory file against the checksum taken when it was written (a restore checks the memory only with "
      "--restore-mode copy or --verify). Exit status 1 names the first damage found");
  check->add_option("DIR", *dir, "The snapshot directory")->required();
  check->callback([dir, exit_status] { *exit_status = verify(*dir); });
}

}  // namespace hostvisor::cli
