#include "devices/virtio/balloon/virtio_balloon.h"

#include <algorithm>
#include <cstring>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

namespace vb = virtio_balloon;

namespace {

constexpr uint64_t align_down(uint64_t value, uint64_t granule) { return value / granule * granule; }
constexpr uint64_t align_up(uint64_t value, uint64_t granule) {
  // Guest addresses are far below 2^64 - granule; saturate rather than wrap anyway.
  return value > UINT64_MAX - (granule - 1) ? align_down(UINT64_MAX, granule)
                                            : align_down(value + granule - 1, granule);
}

uint16_t queue_count_for(const VirtioBalloonOptions& options) {
  return static_cast<uint16_t>(2 + (options.stats_interval.count() > 0 ? 1 : 0) +
                               (options.free_page_reporting ? 1 : 0));
}

std::string mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

}  // namespace

VirtioBalloon::VirtioBalloon(const VirtioBalloonOptions& options)
    : VirtioDeviceCore(queue_count_for(options), kQueueSize), options_(options) {}

uint32_t VirtioBalloon::device_type() const { return virtio::kDeviceBalloon; }

uint64_t VirtioBalloon::device_features() const {
  uint64_t features = virtio::feature_bit(virtio::kFeatureIndirectDesc) | virtio::feature_bit(virtio::kFeatureEventIdx);
  if (options_.stats_interval.count() > 0) features |= virtio::feature_bit(vb::kFeatureStatsVq);
  if (options_.deflate_on_oom) features |= virtio::feature_bit(vb::kFeatureDeflateOnOom);
  if (options_.free_page_reporting) features |= virtio::feature_bit(vb::kFeatureReporting);
  return features;
}

void VirtioBalloon::read_config(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  read_config_bytes(config_, offset, data);
}

void VirtioBalloon::write_config(uint64_t offset, std::span<const uint8_t> data) {
  // Only `actual` is the driver's to write; bytes elsewhere are ignored.
  std::lock_guard lock(mutex_);
  auto* actual = reinterpret_cast<uint8_t*>(&config_.actual);
  for (size_t i = 0; i < data.size(); ++i) {
    const uint64_t at = offset + i;
    if (at >= vb::kConfigActualOffset && at < vb::kConfigActualOffset + sizeof config_.actual)
      actual[at - vb::kConfigActualOffset] = data[i];
  }
}

void VirtioBalloon::set_target_pages(uint32_t pages) {
  run_turn([&] {
    if (config_.num_pages == pages) return;
    config_.num_pages = pages;
    HV_LOG_INFO("virtio-balloon: target {} (the guest has {} in the balloon)", mib(uint64_t{pages} << vb::kPfnShift),
                mib(uint64_t{config_.actual} << vb::kPfnShift));
    signal_config_change();
  });
}

BalloonStatus VirtioBalloon::status() const {
  std::lock_guard lock(mutex_);
  BalloonStatus status;
  status.target_pages = config_.num_pages;
  status.actual_pages = config_.actual;
  status.driver_ready = running();
  status.stats = stats_;
  status.discarded_bytes = discarded_bytes_;
  status.reported_bytes = reported_bytes_;
  status.ring_bytes_kept = ring_bytes_kept_;
  return status;
}

Result<void> VirtioBalloon::on_activate() {
  const uint64_t granule = memory().discard_granularity();
  inflated_.clear();
  if (granule > vb::kPageSize) {
    uint64_t end = 0;
    for (const auto& region : memory().regions()) end = std::max(end, region.end().value());
    inflated_.assign((end / vb::kPageSize + 63) / 64, 0);
  }
  // A restore's bitmap; with 4 KiB discards every inflated page went back
  // already and the bitmap has nothing left to tell.
  const std::vector<InflatedWord> restored = std::exchange(restored_inflated_, {});
  if (!inflated_.empty()) {
    for (const InflatedWord& word : restored) {
      if (word.index >= inflated_.size())
        return Error(ErrorCode::kCorrupt, "the snapshot's balloon holds pages beyond this machine's RAM");
      inflated_[word.index] = word.bits;
    }
  }
  stats_chain_.reset();
  // Linux primes the statistics queue with its first figures and notifies
  // before DRIVER_OK, when no device listens yet: look at every queue now.
  for (uint16_t q = 0; q < queue_count(); ++q)
    if (serving(q)) serve_queue(q);
  return ok();
}

void VirtioBalloon::on_reset() {
  // The chains belong to the queues that go away; a new driver starts with
  // an empty balloon (the pages are its own again).
  stats_chain_.reset();
  inflated_.clear();
  config_.actual = 0;
}

VirtioBalloon::Role VirtioBalloon::role(uint16_t queue) const {
  if (queue == 0) return Role::kInflate;
  if (queue == 1) return Role::kDeflate;
  uint16_t next = 2;
  if (features() & virtio::feature_bit(vb::kFeatureStatsVq)) {
    if (queue == next) return Role::kStats;
    ++next;
  }
  if ((features() & virtio::feature_bit(vb::kFeatureReporting)) && queue == next) return Role::kReporting;
  return Role::kNone;
}

void VirtioBalloon::serve_queue(uint16_t queue) {
  switch (role(queue)) {
    case Role::kInflate: return inflate_or_deflate(queue, true);
    case Role::kDeflate: return inflate_or_deflate(queue, false);
    case Role::kStats: return serve_stats(queue);
    case Role::kReporting: return report_free_ranges(queue);
    case Role::kNone: return;  // a queue the negotiated features leave unused
  }
}

void VirtioBalloon::inflate_or_deflate(uint16_t queue, bool inflate) {
  uint32_t budget = kMaxPagesPerTurn;
  while (running()) {
    if (budget < kMaxPagesPerChain) {
      // Enough for one turn: the rest of the ring waits for the next.
      retry_later(queue, std::chrono::milliseconds(0));
      return;
    }
    auto chain = next_chain(queue);
    if (!chain) return;
    std::vector<uint64_t> pages = read_pfns(*chain, kMaxPagesPerChain);
    budget -= kMaxPagesPerChain;
    if (inflate) {
      inflate_pages(std::move(pages));
    } else {
      deflate_pages(pages);
    }
    if (!complete(queue, *chain, 0)) return;
  }
}

std::vector<uint64_t> VirtioBalloon::read_pfns(const DescriptorChain& chain, uint32_t budget) {
  const uint64_t count = std::min<uint64_t>(chain.readable_bytes() / sizeof(uint32_t), budget);
  std::vector<uint32_t> pfns(count);
  auto read = chain.read(memory(), 0, std::span(reinterpret_cast<uint8_t*>(pfns.data()), count * sizeof(uint32_t)));
  if (!read) {
    fail_guest_misuse(read.error());
    return {};
  }
  std::vector<uint64_t> pages;
  pages.reserve(count);
  for (uint32_t pfn : pfns) {
    const uint64_t address = uint64_t{pfn} << vb::kPfnShift;
    // Outside RAM: not the guest's to give; ignored, as the spec lets a device do.
    if (memory().contains(GuestAddress(address), vb::kPageSize)) pages.push_back(address);
  }
  return pages;
}

void VirtioBalloon::inflate_pages(std::vector<uint64_t> pages) {
  const uint64_t granule = memory().discard_granularity();
  std::sort(pages.begin(), pages.end());
  pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
  if (granule <= vb::kPageSize) {
    // Runs of consecutive pages go back in one call each (Linux hands over
    // pages mostly in order), which also keeps a private mapping from being
    // split page by page.
    for (size_t i = 0; i < pages.size();) {
      size_t j = i + 1;
      while (j < pages.size() && pages[j] == pages[j - 1] + vb::kPageSize) ++j;
      discarded_bytes_ += discard(pages[i], pages[j - 1] + vb::kPageSize);
      i = j;
    }
    return;
  }
  // Huge pages: a huge page goes back once every 4 KiB page of it is in the balloon.
  std::vector<uint64_t> candidates;
  for (uint64_t page : pages) {
    mark_page(page, true);
    const uint64_t huge = align_down(page, granule);
    if (candidates.empty() || candidates.back() != huge) candidates.push_back(huge);
  }
  for (uint64_t huge : candidates) {
    bool whole = true;
    for (uint64_t page = huge; page < huge + granule && whole; page += vb::kPageSize) whole = page_in_balloon(page);
    if (whole) discarded_bytes_ += discard(huge, huge + granule);
  }
}

void VirtioBalloon::deflate_pages(const std::vector<uint64_t>& pages) {
  // Without MUST_TELL_HOST the guest may already be using them; a discarded
  // page simply comes back as a zero page when touched.
  for (uint64_t page : pages) mark_page(page, false);
}

bool VirtioBalloon::page_in_balloon(uint64_t address) const {
  const uint64_t index = address / vb::kPageSize;
  return index / 64 < inflated_.size() && (inflated_[index / 64] >> (index % 64) & 1);
}

void VirtioBalloon::mark_page(uint64_t address, bool in_balloon) {
  const uint64_t index = address / vb::kPageSize;
  if (index / 64 >= inflated_.size()) return;
  const uint64_t bit = uint64_t{1} << (index % 64);
  if (in_balloon) {
    inflated_[index / 64] |= bit;
  } else {
    inflated_[index / 64] &= ~bit;
  }
}

void VirtioBalloon::report_free_ranges(uint16_t queue) {
  uint32_t budget = kMaxRangesPerTurn;
  while (running()) {
    auto chain = next_chain(queue);
    if (!chain) return;
    if (chain->buffers().size() > budget) {
      put_back(queue, *chain);
      retry_later(queue, std::chrono::milliseconds(0));
      return;
    }
    budget -= static_cast<uint32_t>(chain->buffers().size());
    // Linux posts the ranges device-writable; the device writes nothing either way.
    for (const VirtioBuffer& buffer : chain->buffers())
      reported_bytes_ += discard(buffer.address.value(), buffer.address.value() + buffer.length);
    if (!complete(queue, *chain, 0)) return;
  }
}

void VirtioBalloon::serve_stats(uint16_t queue) {
  while (auto chain = next_chain(queue)) {
    // The driver keeps one buffer with us; a second replaces the first,
    // which goes back (so we never hold more than one).
    if (stats_chain_ && !complete(queue, *stats_chain_, 0)) return;
    parse_stats(*chain);
    stats_chain_ = std::move(*chain);
    next_stats_request_ = std::chrono::steady_clock::now() + options_.stats_interval;
  }
  if (!stats_chain_ || !running()) return;
  const auto now = std::chrono::steady_clock::now();
  if (now >= next_stats_request_) {
    // Returning the buffer is the request: the driver refills it and gives it back.
    const DescriptorChain chain = std::move(*stats_chain_);
    stats_chain_.reset();
    complete(queue, chain, 0);
    return;
  }
  retry_later(queue, std::chrono::ceil<std::chrono::milliseconds>(next_stats_request_ - now));
}

void VirtioBalloon::parse_stats(const DescriptorChain& chain) {
  std::vector<vb::Stat> entries(std::min<uint64_t>(chain.readable_bytes() / sizeof(vb::Stat), kMaxStatsPerBuffer));
  auto read =
      chain.read(memory(), 0, std::span(reinterpret_cast<uint8_t*>(entries.data()), entries.size() * sizeof(vb::Stat)));
  if (!read) {
    fail_guest_misuse(read.error());
    return;
  }
  for (const vb::Stat& entry : entries) {
    if (entry.tag >= vb::kStatTagCount) continue;  // a tag newer than this device: skipped
    stats_.value[entry.tag] = entry.value;
    stats_.present |= 1u << entry.tag;
  }
  ++stats_.updates;
  std::string line;
  for (uint16_t tag = 0; tag < vb::kStatTagCount; ++tag) {
    if (!stats_.has(tag)) continue;
    const bool bytes = tag == vb::kStatFreeMemory || tag == vb::kStatTotalMemory || tag == vb::kStatAvailableMemory ||
                       tag == vb::kStatDiskCaches || tag == vb::kStatSwapIn || tag == vb::kStatSwapOut;
    line += std::string(line.empty() ? "" : ", ") + vb::kStatNames[tag] + " " +
            (bytes ? mib(stats_.value[tag]) : std::to_string(stats_.value[tag]));
  }
  HV_LOG_INFO_LIMITED("virtio-balloon: guest statistics: {}", line);
}

uint64_t VirtioBalloon::discard(uint64_t start, uint64_t end) {
  const uint64_t granule = memory().discard_granularity();
  start = align_up(start, granule);
  end = align_down(end, granule);
  if (start >= end) return 0;
  // Cut out every granule that holds a virtqueue ring, of this device or
  // any other: devices read their rings on every notification, and a
  // hostile guest that points a report or an inflation at them must not
  // pull them from under the device.
  std::vector<Range> pieces{{start, end}};
  for (const DeviceMemoryAreas::Area& ring : memory().device_areas().overlapping(start, end)) {
    const Range hole{align_down(ring.start, granule), align_up(ring.end, granule)};
    std::vector<Range> next;
    for (const Range& piece : pieces) {
      if (hole.end <= piece.start || hole.start >= piece.end) {
        next.push_back(piece);
        continue;
      }
      if (piece.start < hole.start) next.push_back({piece.start, hole.start});
      if (hole.end < piece.end) next.push_back({hole.end, piece.end});
      ring_bytes_kept_ += std::min(hole.end, piece.end) - std::max(hole.start, piece.start);
    }
    pieces = std::move(next);
  }
  uint64_t discarded = 0;
  for (const Range& piece : pieces) {
    for (const auto& region : memory().regions()) {
      const uint64_t from = std::max(piece.start, region.start.value());
      const uint64_t to = std::min(piece.end, region.end().value());
      if (from >= to) continue;
      auto done = memory().discard(GuestAddress(from), to - from);
      if (!done) {
        // The host keeps the memory; the guest is unaffected. Say so once.
        if (!std::exchange(discard_failure_logged_, true))
          HV_LOG_WARN("virtio-balloon: cannot give guest RAM back to the host: {}", done.error().message());
        continue;
      }
      discarded += to - from;
    }
  }
  return discarded;
}

Result<void> VirtioBalloon::quiesce() {
  run_turn([this] {
    if (!stats_chain_) return;
    for (uint16_t q = 0; q < queue_count(); ++q) {
      if (!serving(q) || role(q) != Role::kStats) continue;
      put_back(q, *stats_chain_);
      // A machine that goes on after the snapshot takes it again then.
      retry_later(q, std::chrono::milliseconds(0));
    }
    stats_chain_.reset();
  });
  return ok();
}

void VirtioBalloon::encode_state(StateWriter& out, const State& state) {
  out.put(state.num_pages);
  out.put(state.actual);
  out.put(state.stats.present);
  out.put(state.stats.updates);
  for (uint64_t value : state.stats.value) out.put(value);
  out.put(static_cast<uint64_t>(state.inflated.size()));
  for (const InflatedWord& word : state.inflated) {
    out.put(word.index);
    out.put(word.bits);
  }
}

VirtioBalloon::State VirtioBalloon::decode_state(StateReader& in, uint32_t version) {
  State state;
  state.num_pages = in.get<uint32_t>();
  state.actual = in.get<uint32_t>();
  state.stats.present = in.get<uint32_t>();
  state.stats.updates = in.get<uint64_t>();
  for (uint64_t& value : state.stats.value) value = in.get<uint64_t>();
  if (state.stats.present >> vb::kStatTagCount) in.fail("statistics tags beyond the ones this hostvisor knows");
  if (version < 2) return state;
  // Each word is in the record: a count beyond what is left is a lie, not
  // an allocation to make.
  const uint64_t words = in.get<uint64_t>();
  if (words > in.remaining() / (2 * sizeof(uint64_t))) in.fail(std::to_string(words) + " balloon bitmap words");
  for (uint64_t i = 0; i < words && in.ok(); ++i) {
    const InflatedWord word{in.get<uint64_t>(), in.get<uint64_t>()};
    if (word.bits == 0 || (!state.inflated.empty() && word.index <= state.inflated.back().index))
      in.fail("a balloon bitmap word that is empty or out of order");
    state.inflated.push_back(word);
  }
  return state;
}

void VirtioBalloon::save_state(StateWriter& out) const {
  std::lock_guard lock(mutex_);
  State state{config_.num_pages, config_.actual, stats_, {}};
  for (uint64_t i = 0; i < inflated_.size(); ++i)
    if (inflated_[i]) state.inflated.push_back({i, inflated_[i]});
  encode_state(out, state);
}

Result<void> VirtioBalloon::restore_state(StateReader& in, uint32_t version) {
  if (version == 0 || version > kStateVersion)
    return Error(ErrorCode::kUnsupported, "virtio balloon state version " + std::to_string(version));
  State state = decode_state(in, version);
  HV_TRY(in.finish());
  std::lock_guard lock(mutex_);
  config_.num_pages = state.num_pages;
  config_.actual = state.actual;
  stats_ = state.stats;
  // Applied when the transport's restore activates the device (on_activate).
  restored_inflated_ = std::move(state.inflated);
  return ok();
}

}  // namespace hostvisor
