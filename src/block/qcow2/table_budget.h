// The bytes of qcow2 metadata tables one disk may keep cached, shared by the
// caches of every image in its backing chain. A chain of 256 images (the
// most image_open.cpp follows) would otherwise hold 256 times one image's
// cache; with one budget per disk it holds at most the budget plus one
// table per image (each cache keeps the table it used last), whatever the
// chain's depth. The budget only counts: each cache evicts its own clean
// tables when the disk's total is over (TableCache::trim()), and the image
// evicts its backing images' tables before its own (Qcow2Image).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace hostvisor::block::qcow2 {

// 32 MiB of L2 tables map 256 GiB of guest disk with 64 KiB clusters.
inline constexpr uint64_t kDefaultL2CacheBytes = uint64_t{32} << 20;
// 8 MiB of refcount blocks (16-bit refcounts, 64 KiB clusters) cover 16 TiB of file.
inline constexpr uint64_t kDefaultRefcountCacheBytes = uint64_t{8} << 20;

class TableBudget {
 public:
  explicit TableBudget(uint64_t limit_bytes) : limit_(limit_bytes) {}
  TableBudget(const TableBudget&) = delete;
  TableBudget& operator=(const TableBudget&) = delete;

  uint64_t limit() const { return limit_; }
  // Bytes of tables cached now, by every cache sharing the budget.
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  bool over() const { return used() > limit_; }

  void charge(uint64_t bytes) { used_.fetch_add(bytes, std::memory_order_relaxed); }
  void release(uint64_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

 private:
  const uint64_t limit_;
  // Atomic: the images of a chain each have their own lock.
  std::atomic<uint64_t> used_{0};
};

// The two budgets of one disk: L2 tables and refcount blocks.
struct CacheBudget {
  std::shared_ptr<TableBudget> l2;
  std::shared_ptr<TableBudget> refcounts;

  static CacheBudget for_one_disk(uint64_t l2_bytes = kDefaultL2CacheBytes,
                                  uint64_t refcount_bytes = kDefaultRefcountCacheBytes) {
    return {std::make_shared<TableBudget>(l2_bytes), std::make_shared<TableBudget>(refcount_bytes)};
  }
};

}  // namespace hostvisor::block::qcow2
