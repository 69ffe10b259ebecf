#include "fs/node_table.h"

#include <cerrno>

namespace hostvisor::fs {

void NodeTable::set_root(std::shared_ptr<Node> root) {
  std::lock_guard lock(mutex_);
  root->id = kRootId;
  root_ = std::move(root);
}

std::shared_ptr<Node> NodeTable::root() const {
  std::lock_guard lock(mutex_);
  return root_;
}

uint64_t NodeTable::add_lookup(UniqueFd fd, dev_t dev, ino_t ino, mode_t type) {
  std::lock_guard lock(mutex_);
  if (root_ && root_->dev == dev && root_->ino == ino) return kRootId;
  if (auto it = by_identity_.find({dev, ino}); it != by_identity_.end()) {
    ++nodes_[it->second].lookups;
    return it->second;
  }
  if (nodes_.size() >= max_nodes_) {
    errno = ENFILE;
    return 0;
  }
  auto node = std::make_shared<Node>();
  node->id = next_node_++;
  node->fd = std::move(fd);
  node->dev = dev;
  node->ino = ino;
  node->type = type;
  by_identity_[{dev, ino}] = node->id;
  nodes_[node->id] = Entry{node, 1};
  return node->id;
}

std::shared_ptr<Node> NodeTable::node(uint64_t id) const {
  std::lock_guard lock(mutex_);
  if (id == kRootId) return root_;
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.node;
}

void NodeTable::forget(uint64_t id, uint64_t count) {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return;
  if (it->second.lookups > count) {
    it->second.lookups -= count;
    return;
  }
  by_identity_.erase({it->second.node->dev, it->second.node->ino});
  nodes_.erase(it);
}

uint64_t NodeTable::add_handle(std::shared_ptr<Handle> handle) {
  std::lock_guard lock(mutex_);
  if (handles_.size() >= max_handles_) {
    errno = ENFILE;
    return 0;
  }
  const uint64_t fh = next_handle_++;
  handles_[fh] = std::move(handle);
  return fh;
}

std::shared_ptr<Handle> NodeTable::handle(uint64_t fh) const {
  std::lock_guard lock(mutex_);
  auto it = handles_.find(fh);
  return it == handles_.end() ? nullptr : it->second;
}

std::shared_ptr<Handle> NodeTable::remove_handle(uint64_t fh) {
  std::lock_guard lock(mutex_);
  auto it = handles_.find(fh);
  if (it == handles_.end()) return nullptr;
  auto handle = std::move(it->second);
  handles_.erase(it);
  return handle;
}

void NodeTable::clear() {
  std::lock_guard lock(mutex_);
  nodes_.clear();
  by_identity_.clear();
  handles_.clear();
}

size_t NodeTable::node_count() const {
  std::lock_guard lock(mutex_);
  return nodes_.size();
}

size_t NodeTable::handle_count() const {
  std::lock_guard lock(mutex_);
  return handles_.size();
}

}  // namespace hostvisor::fs
