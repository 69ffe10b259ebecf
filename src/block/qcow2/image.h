// qcow2 images: a BlockDevice over a qcow2 file (optionally on top of a
// backing BlockDevice), with cluster allocation, copy-on-write for clusters
// shared with internal snapshots, zero and compressed clusters.
//
// Crash safety comes from the order of metadata writes (see flush_metadata()):
//   1. new data clusters are written in full as soon as the guest writes;
//   2. refcount increments and brand-new tables are written, then fdatasync;
//   3. L2 and L1 changes that reference them are written, then fdatasync;
//   4. only then are the clusters those changes stopped referencing freed.
// A crash between any two steps leaves at most leaked clusters, never a table
// pointing at a cluster whose refcount is zero.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "block/file_image.h"
#include "block/qcow2/format.h"
#include "block/qcow2/metadata_map.h"
#include "block/qcow2/refcounts.h"
#include "block/qcow2/table_cache.h"

namespace hostvisor::block {

struct Qcow2CreateOptions {
  uint64_t size = 0;
  uint32_t cluster_bits = qcow2::kDefaultClusterBits;
  uint32_t refcount_order = qcow2::kDefaultRefcountOrder;
  std::string backing_file;    // as stored in the header (relative to the image's directory or absolute)
  std::string backing_format;  // "raw" or "qcow2"; empty: probed when opened
  bool lazy_refcounts = false;
};

class Qcow2Image final : public FileImage {
 public:
  // `budget`: the cache budgets of the disk this image belongs to; the
  // images of one backing chain share one (open_image does that).
  static Result<std::unique_ptr<Qcow2Image>> open(std::unique_ptr<HostFile> file,
                                                  qcow2::CacheBudget budget = qcow2::CacheBudget::for_one_disk());
  static Result<void> create(const std::string& path, const Qcow2CreateOptions& options);
  ~Qcow2Image() override;

  // Installs the backing device (opened by open_image, which resolves paths).
  void set_backing(std::unique_ptr<BlockDevice> backing) {
    backing_ = std::move(backing);
    backing_qcow2_ = dynamic_cast<Qcow2Image*>(backing_.get());
  }
  BlockDevice* backing() { return backing_.get(); }
  const qcow2::Header& header() const { return header_; }

  const char* format_name() const override { return "qcow2"; }
  uint64_t virtual_size() const override { return header_.size; }
  Result<void> readv(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> writev(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> flush() override;
  Result<void> discard(uint64_t offset, uint64_t length) override;
  Result<void> write_zeroes(uint64_t offset, uint64_t length) override;

  // Asynchronous path: reads of data clusters, in-place writes and writes
  // that allocate clusters reading as zeros go straight to an I/O engine
  // (many in flight); anything else touching metadata, backing files or
  // compressed clusters runs on the worker over the synchronous calls. An
  // allocating write's clusters are allocated in memory when it is planned
  // and linked into their L2 table when its data is written (the completion
  // then takes the image lock, waiting for a worker request that holds it);
  // a request touching them meanwhile is parked until they are linked.
  //
  // Planning a request on the submitting thread never does I/O nor waits:
  // it maps the request through cached L2 tables only (TableCache::find), and
  // only if the image lock is free at once (try_lock). A table that is not
  // cached sends the request to the worker, which reads the table (so the
  // requests after it find it cached and go direct). A lock held by the
  // worker parks the request (and those after it, keeping their order) until
  // the worker signals a completion and the poll plans it again; a lock held
  // by a synchronous caller on another thread sends it to the worker. Other
  // metadata updates stay on the worker, in the order flush_metadata()
  // describes. (A synchronous write from another thread is not ordered
  // against an allocation still in flight on the direct path.)
  //
  // Ordering: a request goes direct only if no request on the worker touches
  // the same clusters, so it never overtakes one submitted before it that it
  // could observe or disturb; a flush is held until the
  // direct requests submitted before it have completed, then runs on the
  // worker (which finishes its earlier requests first).
  void submit(BlockRequest request, BlockCompletion done) override;
  void poll_completions(bool wait) override;
  int notify_fd() override;
  size_t requests_in_flight() const override;

  // Whether the guest cluster containing offset is stored in this file (as
  // data, zeros or compressed) rather than falling through to the backing file.
  Result<bool> is_allocated(uint64_t offset);
  // Writes one whole guest cluster compressed (used by convert --compress);
  // falls back to an ordinary write when it does not compress.
  Result<void> write_compressed(uint64_t cluster_offset, const uint8_t* data);
  // Drops the clusters wholly inside the range from this file, so they read
  // from the backing file again (after commit has copied them there).
  Result<void> deallocate(uint64_t offset, uint64_t length);
  Result<void> resize(uint64_t new_size);
  // Points the header at a different backing file (after commit or rebase).
  Result<void> set_backing_file(const std::string& name, const std::string& format);

  // Internal snapshots (snapshots.cpp).
  std::vector<qcow2::Snapshot> snapshots() const;
  Result<void> create_snapshot(const std::string& name);
  Result<void> apply_snapshot(const std::string& name_or_id);
  Result<void> delete_snapshot(const std::string& name_or_id);

  // Walks every active L2 table of a writable image and refuses (marking it
  // corrupt) an entry whose clusters lie in metadata. The disk
  // commands that change an image run it first; a running VM checks each
  // write instead, since walking every table at open costs a read of each.
  Result<void> check_references();

  // The disk's cache budgets (shared with the rest of the chain) and this
  // image's share of them.
  const qcow2::CacheBudget& cache_budget() const { return budget_; }
  size_t cached_l2_tables() const {
    std::lock_guard lock(mutex_);
    return l2_cache_->size();
  }

  // Host bytes in use by the file.
  Result<uint64_t> file_size() const { return file_->size(); }

 private:
  explicit Qcow2Image(std::unique_ptr<HostFile> file) : FileImage(std::move(file)) {}
  Result<void> load(uint64_t file_size);

  enum class Kind { kUnallocated, kZero, kNormal, kCompressed };
  struct Mapping {
    Kind kind;
    uint64_t entry;  // raw L2 entry
    uint64_t host;   // kNormal: host offset of the cluster
  };
  Result<Mapping> classify(uint64_t entry, uint64_t guest_offset) const;
  Result<Mapping> lookup(uint64_t guest_offset);
  // lookup() from cached tables only: nullopt when the L2 table is not cached.
  std::optional<Result<Mapping>> lookup_cached(uint64_t guest_offset);
  Result<uint64_t> l2_table_offset(uint64_t l1_index, bool* corrupt_entry) const;
  // The L2 table for guest_offset made writable (allocated or copied as needed).
  Result<qcow2::TableCache::Table*> l2_for_write(uint64_t guest_offset);
  // Reads [in_cluster, in_cluster+len) of a guest cluster, given its mapping.
  Result<void> read_mapped(const Mapping& m, uint64_t guest_offset, std::span<const iovec> iov);
  Result<void> read_backing(uint64_t guest_offset, std::span<const iovec> iov);
  Result<const std::vector<uint8_t>*> decompress(uint64_t entry);
  Result<void> write_locked(uint64_t offset, std::span<const iovec> iov);
  enum class ZeroMode { kZero, kDiscard, kDeallocate };
  Result<void> zero_clusters(uint64_t offset, uint64_t length, ZeroMode mode);
  // discard, write_zeroes and deallocate: zero_clusters under the lock, for a writable image.
  Result<void> change_range(uint64_t offset, uint64_t length, ZeroMode mode);
  // Refuses (marking the image corrupt) an L2 entry whose host clusters lie in metadata.
  Result<void> check_reference(const Mapping& m);
  // Remembers a reference dropped by an in-memory table change; freed after the change is durable.
  Result<void> defer_free(const Mapping& m);
  void defer_free_cluster(uint64_t host_offset) { pending_frees_.push_back(host_offset / cluster_size_); }
  Result<void> flush_metadata();
  Result<void> maybe_trim_caches();
  // Evicts clean tables while the disk's budget is exceeded: the backing
  // images' first (read-only, so always clean, and under the tables of the
  // image the guest writes), then this image's. Never writes.
  void trim_clean_tables();
  void trim_backing_tables();
  Result<void> write_header();
  Result<void> write_l1();
  // Writes `entries` as a new L1 table elsewhere, then switches the header to
  // it (with the virtual size) in one write; the old table's clusters are freed.
  Result<void> move_l1(std::vector<uint64_t> entries, uint64_t virtual_size);
  Result<void> require_writable() const;
  // Recomputes the metadata map from the header, L1 table, refcount table
  // and snapshot table (after a change that moves whole tables); an error
  // when two structures share a cluster.
  Result<void> rebuild_metadata_map();
  // Refuses a guest write of len bytes at host offset `host` that would land
  // in metadata: the image is marked corrupt and the error says why.
  Result<void> check_data_write(uint64_t host, uint64_t len, uint64_t guest_offset);
  // Sets the header's corrupt bit (after writing out the metadata still
  // pending, which is sound) and refuses every later change to the image.
  Error mark_corrupt(const std::string& what);

  // Snapshot helpers (snapshots.cpp).
  Result<std::vector<uint64_t>> read_l1(uint64_t offset, uint32_t entries);
  Result<void> update_tree_refcounts(const std::vector<uint64_t>& l1, int64_t delta);
  Result<void> fix_copied_flags();
  Result<void> write_snapshot_table(std::vector<qcow2::Snapshot> snapshots);
  Result<size_t> find_snapshot(const std::string& name_or_id) const;

  struct AsyncOp;
  // Guest clusters a direct-path write allocated, linked into their L2 table
  // once the data is written (so no table points at a cluster before its data).
  struct DirectAllocation {
    uint64_t guest = 0;  // first guest cluster's offset
    uint64_t clusters = 0;
    uint64_t host = 0;  // first host cluster's offset (the run is contiguous)
  };
  // Maps an asynchronous read/write onto host ranges; false if it needs the worker.
  enum class Plan { kDirect, kWorker, kBusy };
  // kBusy: the image lock was taken (planning never waits for it).
  Plan plan_direct(const BlockRequest& r, std::vector<std::pair<uint64_t, std::vector<iovec>>>* pieces,
                   std::optional<DirectAllocation>* allocation);
  // A write whose clusters all read as zeros and need allocating, with no
  // copy-on-write to do: allocates them in fresh file space (in memory only)
  // so the data can go straight to the engine. kWorker when any of that
  // would need I/O or a copy.
  Plan plan_allocation(const BlockRequest& r, std::vector<std::pair<uint64_t, std::vector<iovec>>>* pieces,
                       std::optional<DirectAllocation>* allocation);
  // After the data write: points the L2 entries at the new clusters, or
  // (the write failed) frees them.
  Result<void> link_allocation(const DirectAllocation& a, bool written);
  // Submits direct or to the worker; false: parks it (taking nothing from the arguments).
  bool try_submit(BlockRequest& request, BlockCompletion& done);
  void retry_parked();
  struct Parked {
    BlockRequest request;
    BlockCompletion done;
  };
  // Requests waiting for the lock while the worker holds it, in submission order.
  std::deque<Parked> parked_;
  void ensure_async_engine();
  void complete_now(BlockCompletion done, Result<void> result);

  std::unique_ptr<IoEngine> async_engine_;  // used only from the thread that calls submit/poll
  std::atomic<size_t> async_inflight_{0};   // host I/Os of the direct path not yet completed
  size_t direct_requests_ = 0;              // guest requests on the direct path, incl. ready_
  size_t delivered_ = 0;                    // direct-path completions run so far
  std::vector<std::pair<BlockCompletion, Result<void>>> ready_;
  // Flush barrier over the direct path: sequence numbers of direct requests
  // still running, and flushes waiting for those below their `after`.
  uint64_t next_direct_seq_ = 0;
  std::set<uint64_t> direct_seqs_;
  struct HeldFlush {
    uint64_t after;
    BlockRequest request;
    BlockCompletion done;
  };
  std::deque<HeldFlush> held_flushes_;
  void release_flushes();
  // Cluster-aligned guest ranges of the requests on the worker, by id.
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> worker_ranges_;
  // Guest ranges of direct-path allocations not linked yet, by sequence
  // number: every request touching one waits (parked) until it is linked.
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> allocating_ranges_;
  uint64_t next_worker_id_ = 0;
  std::unique_ptr<BlockDevice> backing_;
  // backing_ when it is a qcow2 image too: its caches share budget_.
  Qcow2Image* backing_qcow2_ = nullptr;
  qcow2::CacheBudget budget_;
  qcow2::Header header_;
  uint64_t cluster_size_ = 0;
  uint32_t l2_bits_ = 0;
  std::vector<uint64_t> l1_;
  uint64_t l1_dirty_lo_ = UINT64_MAX, l1_dirty_hi_ = 0;
  std::unique_ptr<qcow2::TableCache> l2_cache_;
  std::unique_ptr<qcow2::MetadataMap> metadata_;
  std::unique_ptr<qcow2::Refcounts> refcounts_;
  std::vector<qcow2::Snapshot> snapshots_;
  uint64_t snapshot_table_bytes_ = 0;
  std::vector<uint64_t> pending_frees_;  // cluster indices to decrement once metadata is durable
  uint64_t compressed_cache_entry_ = 0;
  std::vector<uint8_t> compressed_cache_;
  // Compressed writes pack into the tail of one host cluster.
  uint64_t compressed_tail_ = 0;
  bool metadata_dirty_ = false;
  // Set once a write was found aiming at metadata; nothing is written after that.
  bool corrupt_ = false;
  mutable std::recursive_mutex mutex_;
};

}  // namespace hostvisor::block
