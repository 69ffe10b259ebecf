#include "devices/virtio/virtio_transport_core.h"

#include <string>

#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

Result<void> VirtioTransportCore::validate(const VirtioDevice& device, uint16_t max_queues) {
  const std::string name(device.name());
  if (device.queue_count() == 0 || device.queue_count() > max_queues)
    return Error(ErrorCode::kInvalidArgument,
                 name + ": a virtio device here has 1 to " + std::to_string(max_queues) + " queues");
  for (uint16_t q = 0; q < device.queue_count(); ++q) {
    const uint16_t max = device.queue_max_size(q);
    if (max == 0 || max > virtio::kMaxQueueSize || (max & (max - 1)))
      return Error(ErrorCode::kInvalidArgument, name + ": queue maximum size must be a power of two up to 32768");
  }
  return ok();
}

VirtioTransportCore::VirtioTransportCore(std::shared_ptr<VirtioDevice> device, GuestMemory& memory,
                                         VirtioInterrupt& interrupt)
    : device_(std::move(device)),
      memory_(memory),
      interrupt_(interrupt),
      queue_count_(device_->queue_count()),
      queue_config_(queue_count_),
      queues_(queue_count_),
      queue_enabled_(new bool[queue_count_]()),
      device_areas_(memory.shared_device_areas()) {
  for (uint16_t q = 0; q < queue_count_; ++q) queue_config_[q].size = device_->queue_max_size(q);
}

VirtioTransportCore::~VirtioTransportCore() { device_areas_->publish(this, {}); }

void VirtioTransportCore::publish_rings() {
  std::vector<DeviceMemoryAreas::Area> rings;
  for (uint16_t q = 0; q < queue_count_; ++q) {
    if (!queue_enabled_[q]) continue;
    const auto areas = virtqueue_ring_areas(queues_[q].layout());
    rings.insert(rings.end(), areas.begin(), areas.end());
  }
  device_areas_->publish(this, std::move(rings));
}

uint64_t VirtioTransportCore::offered_features() const {
  // Never packed rings, notification data, IOMMU and the like: only the
  // split-ring features Virtqueue implements.
  const uint64_t ring =
      virtio::feature_bit(virtio::kFeatureIndirectDesc) | virtio::feature_bit(virtio::kFeatureEventIdx);
  return (device_->device_features() & (0xffffffull | ring)) | virtio::feature_bit(virtio::kFeatureVersion1);
}

uint32_t VirtioTransportCore::device_features_word(uint32_t select) const {
  return select < 2 ? static_cast<uint32_t>(offered_features() >> (32 * select)) : 0;
}

uint32_t VirtioTransportCore::driver_features_word(uint32_t select) const {
  return select < 2 ? static_cast<uint32_t>(driver_features_ >> (32 * select)) : 0;
}

void VirtioTransportCore::set_driver_features_word(uint32_t select, uint32_t value) {
  if (select >= 2 || (status() & virtio::kStatusFeaturesOk)) return;
  const unsigned shift = 32 * select;
  driver_features_ = (driver_features_ & ~(0xffffffffull << shift)) | uint64_t{value} << shift;
}

uint16_t VirtioTransportCore::queue_max_size(uint16_t index) const {
  return index < queue_count_ ? device_->queue_max_size(index) : 0;
}

bool VirtioTransportCore::mark_needs_reset() {
  const uint8_t old = status_.fetch_or(virtio::kStatusDeviceNeedsReset);
  return !(old & virtio::kStatusDeviceNeedsReset);
}

void VirtioTransportCore::fail(const Error& reason) { interrupt_.signal_needs_reset(reason); }

bool VirtioTransportCore::write_status(uint8_t value) {
  if (value == 0) {
    reset();
    return true;
  }
  const uint8_t old = status();
  uint8_t next = value & ~virtio::kStatusDeviceNeedsReset;  // only the device sets that one
  if ((next & virtio::kStatusFeaturesOk) && !(old & virtio::kStatusFeaturesOk)) {
    // FEATURES_OK sticks only for a subset of what we offered, with VERSION_1 (3.1.1).
    const bool subset = (driver_features_ & ~offered_features()) == 0;
    const bool modern = driver_features_ & virtio::feature_bit(virtio::kFeatureVersion1);
    if (!subset || !modern) next &= ~virtio::kStatusFeaturesOk;
  }
  // Keep DEVICE_NEEDS_RESET if a device thread set it meanwhile.
  uint8_t expected = old;
  while (!status_.compare_exchange_weak(expected,
                                        static_cast<uint8_t>(next | (expected & virtio::kStatusDeviceNeedsReset)))) {
  }
  if ((next & virtio::kStatusDriverOk) && !(old & virtio::kStatusDriverOk) && !activated_) {
    if (!(next & virtio::kStatusFeaturesOk)) {
      fail(Error(ErrorCode::kGuest, "the driver set DRIVER_OK without FEATURES_OK"));
      return false;
    }
    const VirtioActivation activation{&memory_, driver_features_, queues_,
                                      std::span<const bool>(queue_enabled_.get(), queue_count_), &interrupt_};
    auto r = device_->activate(activation);
    if (!r) {
      fail(r.error().with_context("activating " + std::string(device_->name())));
      return false;
    }
    activated_ = true;
  }
  return false;
}

void VirtioTransportCore::reset() {
  if (activated_) device_->reset();  // the device stops using queues and memory first
  activated_ = false;
  driver_features_ = 0;
  for (uint16_t q = 0; q < queue_count_; ++q) {
    queue_config_[q] = QueueConfig{};
    queue_config_[q].size = device_->queue_max_size(q);  // reset value: the maximum
    queues_[q] = Virtqueue();
    queue_enabled_[q] = false;
  }
  publish_rings();
  status_ = 0;
}

void VirtioTransportCore::enable_queue(uint16_t index) {
  QueueConfig* q = queue(index);
  if (!q || q->enabled) return;
  if (q->size > device_->queue_max_size(index)) {
    fail(Error(ErrorCode::kGuest, "queue " + std::to_string(index) + " size " + std::to_string(q->size) +
                                      " exceeds the maximum " + std::to_string(device_->queue_max_size(index))));
    return;
  }
  // Drivers set FEATURES_OK before queue set-up, so the features are final here.
  auto created = Virtqueue::create(
      memory_, VirtqueueLayout{q->size, GuestAddress(q->desc), GuestAddress(q->driver), GuestAddress(q->device)},
      driver_features_);
  if (!created) {
    fail(created.error().with_context("queue " + std::to_string(index)));
    return;
  }
  queues_[index] = std::move(created).value();
  queue_enabled_[index] = true;
  q->enabled = true;
  publish_rings();
}

void VirtioTransportCore::notify(uint16_t index) {
  if (index >= queue_count_ || !activated_ || !queue_enabled_[index]) return;
  if (status() & virtio::kStatusDeviceNeedsReset) return;  // nothing runs until the driver resets us
  auto r = device_->process_queue(index);
  if (!r) fail(r.error().with_context(std::string(device_->name()) + " queue " + std::to_string(index)));
}

}  // namespace hostvisor

namespace hostvisor {

VirtioTransportCore::State VirtioTransportCore::save() const {
  State state{driver_features_, status(), activated_, {}};
  for (uint16_t q = 0; q < queue_count_; ++q) state.queues.push_back({queue_config_[q], queues_[q].state()});
  return state;
}

Result<void> VirtioTransportCore::restore(const State& state) {
  reset();
  const std::string name(device_->name());
  if (state.queues.size() != queue_count_)
    return Error(ErrorCode::kCorrupt, "snapshot of virtio " + name + " has " + std::to_string(state.queues.size()) +
                                          " queues, the device has " + std::to_string(queue_count_));
  for (uint16_t q = 0; q < queue_count_; ++q) {
    const QueueConfig& c = state.queues[q].config;
    if (c.size > device_->queue_max_size(q))
      return Error(ErrorCode::kCorrupt, "snapshot of virtio " + name + " queue " + std::to_string(q) + " is too large");
    if (!c.enabled) continue;
    auto created = Virtqueue::create(
        memory_, VirtqueueLayout{c.size, GuestAddress(c.desc), GuestAddress(c.driver), GuestAddress(c.device)},
        state.driver_features);
    if (!created) return Error(ErrorCode::kCorrupt, "snapshot of virtio " + name + ": " + created.error().message());
    queues_[q] = std::move(created).value();
    queues_[q].restore(state.queues[q].ring);
    queue_enabled_[q] = true;
  }
  for (uint16_t q = 0; q < queue_count_; ++q) queue_config_[q] = state.queues[q].config;
  publish_rings();
  driver_features_ = state.driver_features;
  status_ = state.status;
  if (state.activated) {
    const VirtioActivation activation{&memory_, driver_features_, queues_,
                                      std::span<const bool>(queue_enabled_.get(), queue_count_), &interrupt_};
    auto r = device_->activate(activation);
    if (!r) {
      reset();
      return r.error().with_context("restoring virtio " + name);
    }
    activated_ = true;
  }
  return ok();
}

void VirtioTransportCore::encode_state(StateWriter& out, const State& s) {
  out.put(s.driver_features);
  out.put(s.status);
  out.put_bool(s.activated);
  out.put(static_cast<uint32_t>(s.queues.size()));
  for (const QueueState& q : s.queues) {
    out.put(q.config.size);
    out.put_bool(q.config.enabled);
    out.put(q.config.desc);
    out.put(q.config.driver);
    out.put(q.config.device);
    Virtqueue::encode_state(out, q.ring);
  }
}

VirtioTransportCore::State VirtioTransportCore::decode_state(StateReader& in) {
  State s;
  s.driver_features = in.get<uint64_t>();
  s.status = in.get<uint8_t>();
  s.activated = in.get_bool();
  const uint32_t queues = in.get<uint32_t>();
  if (queues > 1024) in.fail(std::to_string(queues) + " virtqueues");
  for (uint32_t i = 0; i < queues && in.ok(); ++i) {
    QueueState q;
    q.config.size = in.get<uint16_t>();
    q.config.enabled = in.get_bool();
    q.config.desc = in.get<uint64_t>();
    q.config.driver = in.get<uint64_t>();
    q.config.device = in.get<uint64_t>();
    q.ring = Virtqueue::decode_state(in);
    s.queues.push_back(q);
  }
  return s;
}

}  // namespace hostvisor
