// A FUSE server (the protocol of linux/fuse.h) that serves one host
// directory, in process, as the user hostvisor runs as. It knows nothing of
// virtio: it takes one request's bytes and gives back the reply's bytes
// (src/devices/virtio/fs/ carries them over virtqueues).
//
// Confinement: the guest can name only what lies beneath the root.
//  - A node is an O_PATH descriptor. A name is resolved one component at a
//    time, relative to its parent's descriptor, with openat2(RESOLVE_BENEATH
//    | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS); a name holding '/', or
//    "." or "..", is refused. A symlink is opened as itself (O_NOFOLLOW) and
//    never followed, whoever planted it and whenever.
//  - Operations on a name (mkdir, unlink, rename, symlink...) take the
//    parent's descriptor and the single checked name (the *at calls).
//  - Opening a node for I/O goes through /proc/self/fd/N of the node's own
//    checked O_PATH descriptor, and only for regular files and directories.
//  - Node IDs and file handles are table entries (node_table.h): one never
//    handed out, or forgotten, finds nothing.
// Files it creates belong to the user running hostvisor (the uid/gid in a
// request are ignored). Read-only shares answer EROFS to every change.
//
// Thread-safe: handle() may run on several threads at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "fs/node_table.h"

namespace hostvisor::fs {

enum class CachePolicy { kAuto, kAlways, kNever };

struct FuseServerOptions {
  bool read_only = false;
  CachePolicy cache = CachePolicy::kAuto;
  size_t max_nodes = 16384;
  size_t max_handles = 4096;
};

class FuseServer {
 public:
  // The largest READ or WRITE payload (advertised in INIT as max_write and
  // max_pages), and the largest request or reply the server takes or makes.
  static constexpr uint32_t kMaxIo = 512 * 1024;
  static constexpr size_t kMaxRequest = kMaxIo + 4096;
  static constexpr size_t kMaxReply = kMaxIo + 4096;

  // Serves the directory `root` (which must exist and be a directory).
  static Result<std::unique_ptr<FuseServer>> open(const std::string& root, FuseServerOptions options);

  // Serves one request: `request` is its bytes (fuse_in_header first),
  // `reply_room` how many bytes the reply may have. Returns the reply
  // (fuse_out_header first; at most reply_room bytes), or nothing for a
  // request that has none (FORGET, BATCH_FORGET) or whose header is too
  // short to answer.
  std::optional<std::vector<uint8_t>> handle(std::span<const uint8_t> request, size_t reply_room);

  // A new session (the driver reset the device): every node but the root
  // and every handle is dropped, and INIT is expected again.
  void reset();
  // Wakes requests waiting for a lock (SETLKW) so they answer at once.
  void stop_waiting();

  size_t node_count() const { return table_.node_count(); }
  size_t handle_count() const { return table_.handle_count(); }

 private:
  FuseServer(UniqueFd root, UniqueFd proc_fd, FuseServerOptions options);
  class Dispatch;

  NodeTable table_;
  UniqueFd proc_fd_;  // /proc/self/fd, to reopen checked O_PATH descriptors
  FuseServerOptions options_;
  std::mutex session_mutex_;
  bool initialized_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<int> lock_waiters_{0};
};

}  // namespace hostvisor::fs
