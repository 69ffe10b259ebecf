// The FUSE server's two tables: nodes (what a FUSE node ID names, an
// O_PATH descriptor of a file beneath the share's root) and handles (what a
// file handle names: a descriptor opened for I/O). Both are bounded, and an ID
// the guest never got, or gave back, finds nothing: the server answers
// ENOENT/EBADF. IDs are never reused (64-bit counters), so a stale ID can
// never name a newer node.
//
// Thread-safe: the server's workers share the tables. Entries are held by
// shared_ptr, so a node forgotten while a request still uses it stays open
// until that request ends.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "base/fd.h"

namespace hostvisor::fs {

struct Node {
  uint64_t id = 0;
  UniqueFd fd;      // O_PATH | O_NOFOLLOW, beneath the root
  dev_t dev = 0;    // host identity, so a file found by two names
  ino_t ino = 0;    // (hard links, a second lookup) is one node
  mode_t type = 0;  // S_IFMT bits, fixed for the file's life
};

struct Handle {
  std::shared_ptr<Node> node;
  UniqueFd fd;  // opened for I/O (or a directory stream)
  bool directory = false;
  std::mutex directory_mutex;  // a READDIR seeks, then reads: one at a time
};

class NodeTable {
 public:
  static constexpr uint64_t kRootId = 1;

  NodeTable(size_t max_nodes, size_t max_handles) : max_nodes_(max_nodes), max_handles_(max_handles) {}

  // The root: never forgotten.
  void set_root(std::shared_ptr<Node> root);
  std::shared_ptr<Node> root() const;

  // The node for `fd` (a fresh O_PATH descriptor of the file st describes),
  // with one more lookup counted: the existing node when the file already
  // has one (then `fd` is closed), else a new one. 0 with errno ENFILE when
  // the table is full.
  uint64_t add_lookup(UniqueFd fd, dev_t dev, ino_t ino, mode_t type);
  std::shared_ptr<Node> node(uint64_t id) const;
  // The guest dropped `count` lookups of `id` (FORGET): at zero it is gone.
  void forget(uint64_t id, uint64_t count);

  // 0 with errno ENFILE when full.
  uint64_t add_handle(std::shared_ptr<Handle> handle);
  std::shared_ptr<Handle> handle(uint64_t fh) const;
  std::shared_ptr<Handle> remove_handle(uint64_t fh);

  // Drops every node but the root and every handle (a new session).
  void clear();
  size_t node_count() const;
  size_t handle_count() const;

 private:
  struct Entry {
    std::shared_ptr<Node> node;
    uint64_t lookups = 0;
  };
  const size_t max_nodes_, max_handles_;
  mutable std::mutex mutex_;
  std::shared_ptr<Node> root_;
  std::unordered_map<uint64_t, Entry> nodes_;
  std::map<std::pair<dev_t, ino_t>, uint64_t> by_identity_;
  std::unordered_map<uint64_t, std::shared_ptr<Handle>> handles_;
  uint64_t next_node_ = kRootId + 1;
  uint64_t next_handle_ = 1;
};

}  // namespace hostvisor::fs
