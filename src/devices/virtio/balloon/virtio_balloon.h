// virtio memory balloon (virtio 1.2, 5.5): the host asks the guest to give
// back memory (num_pages), the guest hands 4 KiB pages over on the inflate
// queue and takes them back on the deflate queue; the host returns inflated
// pages to its own kernel with GuestMemory::discard. Optional queues:
//  - statsq (STATS_VQ): the driver's memory statistics, requested every
//    stats interval by returning the buffer the driver left with us; the
//    latest figures are kept for status() and logged at info level;
//  - reporting_vq (REPORTING, free page reporting): the driver lists free
//    ranges of its own accord (Linux: 2 MiB and larger, once they have stayed
//    free a moment) and each range is discarded, so memory a guest freed goes
//    back to the host without any balloon target.
// DEFLATE_ON_OOM is offered when asked for: the guest may then take pages out
// of the balloon itself rather than OOM-kill.
//
// Queues are numbered the way Linux and QEMU number them: inflateq 0,
// deflateq 1, then each negotiated optional queue in turn (statsq, then
// reporting_vq), with the absent ones skipped.
//
// Everything in the queues is the guest's and hostile. Every PFN and range
// is checked against RAM; PFNs outside RAM and pages holding any device's
// virtqueue rings (GuestMemory::device_areas(), which the transports keep)
// are kept (discarding a ring would pull it from under its device);
// work per turn is bounded (kMaxPagesPerTurn PFNs, kMaxRangesPerTurn
// reported ranges; the rest waits for the next turn, which the core
// schedules). Duplicates are harmless: discarding a page twice is a no-op.
// A guest that uses a page after giving it away reads zeros, never stale or
// foreign data (discard's contract).
//
// Discard granularity: when RAM can only be discarded in 2 MiB pages
// (hugetlbfs backing), inflated 4 KiB pages are tracked in a bitmap and a
// huge page is discarded once all 512 of its 4 KiB pages are in the
// balloon; reported ranges are trimmed to the whole huge pages inside them.
//
// Thread-safe: the host control calls (set_target_pages, status) may come
// from any thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "devices/virtio/balloon/virtio_balloon_spec.h"
#include "devices/virtio/virtio_device_core.h"

namespace hostvisor {

struct VirtioBalloonOptions {
  bool deflate_on_oom = false;
  bool free_page_reporting = true;
  // How often the guest's statistics are requested; zero: no statistics queue.
  std::chrono::seconds stats_interval{5};
};

// The guest's latest statistics: value[tag] where present[tag] (tags in virtio_balloon_spec.h).
struct BalloonStats {
  std::array<uint64_t, virtio_balloon::kStatTagCount> value{};
  uint32_t present = 0;  // bit per tag
  uint64_t updates = 0;  // how many times the guest has answered
  bool has(uint16_t tag) const { return tag < value.size() && (present >> tag & 1); }
};

struct BalloonStatus {
  uint32_t target_pages = 0;  // what the host asked for (4 KiB pages)
  uint32_t actual_pages = 0;  // what the driver says the balloon holds
  bool driver_ready = false;  // a driver has the device (else the target waits for one)
  BalloonStats stats;
  uint64_t discarded_bytes = 0;  // returned to the host by inflation since start
  uint64_t reported_bytes = 0;   // returned to the host by free page reporting since start
  // Inflated or reported but kept: they hold virtqueue rings (a guest that
  // does this is broken or hostile; Linux never does).
  uint64_t ring_bytes_kept = 0;
};

class VirtioBalloon : public VirtioDeviceCore {
 public:
  static constexpr uint16_t kQueueSize = 128;
  // Linux puts 256 PFNs in one inflate buffer; a bigger one is read up to this.
  static constexpr uint32_t kMaxPagesPerChain = 1024;
  static constexpr uint32_t kMaxPagesPerTurn = 16 * 1024;
  // Linux reports at most 32 ranges per buffer.
  static constexpr uint32_t kMaxRangesPerTurn = 1024;
  // Statistics entries read from one buffer (Linux sends 10 to 16).
  static constexpr uint32_t kMaxStatsPerBuffer = 64;

  // The snapshot state: the host's target, the driver's figures, and with
  // huge pages which 4 KiB pages are in the balloon (so a restored balloon
  // still gives back a huge page once its last 4 KiB page comes in).
  // Version 1 had no bitmap; it restores with an empty one.
  struct InflatedWord {
    uint64_t index;  // in the bitmap: pages index * 64 .. index * 64 + 63
    uint64_t bits;   // never zero
    bool operator==(const InflatedWord&) const = default;
  };
  struct State {
    uint32_t num_pages = 0;
    uint32_t actual = 0;
    BalloonStats stats;
    std::vector<InflatedWord> inflated;  // the bitmap's non-zero words, by index
  };
  static constexpr uint32_t kStateVersion = 2;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in, uint32_t version = kStateVersion);

  explicit VirtioBalloon(const VirtioBalloonOptions& options);

  // Host control. Asks the guest to hold `pages` 4 KiB pages in the balloon
  // (0: give everything back); the driver is told with a configuration
  // interrupt and answers in its own time.
  void set_target_pages(uint32_t pages);
  BalloonStatus status() const;

  std::string_view name() const override { return "balloon"; }
  uint32_t device_type() const override;
  uint64_t device_features() const override;
  uint32_t config_size() const override { return sizeof(virtio_balloon::Config); }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;

  // Gives the held statistics buffer back to the ring (taken again on restore).
  Result<void> quiesce() override;
  uint32_t state_version() const override { return kStateVersion; }
  void save_state(StateWriter& out) const override;
  Result<void> restore_state(StateReader& in, uint32_t version) override;

 private:
  enum class Role { kInflate, kDeflate, kStats, kReporting, kNone };
  struct Range {
    uint64_t start, end;  // guest-physical, [start, end)
  };

  Result<void> on_activate() override;
  void on_reset() override;
  void serve_queue(uint16_t queue) override;
  Role role(uint16_t queue) const;

  void inflate_or_deflate(uint16_t queue, bool inflate);
  // Reads up to `budget` PFNs from `chain` as 4 KiB-aligned guest addresses.
  std::vector<uint64_t> read_pfns(const DescriptorChain& chain, uint32_t budget);
  void inflate_pages(std::vector<uint64_t> addresses);
  void deflate_pages(const std::vector<uint64_t>& addresses);
  void report_free_ranges(uint16_t queue);
  void serve_stats(uint16_t queue);
  void parse_stats(const DescriptorChain& chain);
  // Discards [start, end) minus every device's rings
  // (GuestMemory::device_areas()), in whole granules, split at RAM region
  // boundaries; returns the bytes given back.
  uint64_t discard(uint64_t start, uint64_t end);
  bool page_in_balloon(uint64_t address) const;
  void mark_page(uint64_t address, bool in_balloon);

  const VirtioBalloonOptions options_;

  // --- guarded by the core's mutex_
  virtio_balloon::Config config_{};
  BalloonStats stats_;
  uint64_t discarded_bytes_ = 0;
  uint64_t reported_bytes_ = 0;
  uint64_t ring_bytes_kept_ = 0;
  // One bit per 4 KiB page of guest-physical address space: in the balloon.
  // Kept only when discards are coarser than 4 KiB (huge pages).
  std::vector<uint64_t> inflated_;
  // A restored bitmap, until activation sizes inflated_ from the memory.
  std::vector<InflatedWord> restored_inflated_;
  std::optional<DescriptorChain> stats_chain_;  // the driver's buffer we hold
  std::chrono::steady_clock::time_point next_stats_request_{};
  bool discard_failure_logged_ = false;
};

}  // namespace hostvisor
