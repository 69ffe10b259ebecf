#include "devices/virtio/mmio/virtio_mmio_device.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

namespace {
// 4.2.2 register offsets.
enum : uint64_t {
  kMagicValue = 0x000,
  kVersionReg = 0x004,
  kDeviceId = 0x008,
  kVendorIdReg = 0x00c,
  kDeviceFeatures = 0x010,
  kDeviceFeaturesSel = 0x014,
  kDriverFeatures = 0x020,
  kDriverFeaturesSel = 0x024,
  kQueueSel = 0x030,
  kQueueNumMax = 0x034,
  kQueueNum = 0x038,
  kQueueReady = 0x044,
  kQueueNotify = 0x050,
  kInterruptStatus = 0x060,
  kInterruptAck = 0x064,
  kStatus = 0x070,
  kQueueDescLow = 0x080,
  kQueueDescHigh = 0x084,
  kQueueDriverLow = 0x090,
  kQueueDriverHigh = 0x094,
  kQueueDeviceLow = 0x0a0,
  kQueueDeviceHigh = 0x0a4,
  kShmSel = 0x0ac,
  kShmLenLow = 0x0b0,
  kShmLenHigh = 0x0b4,
  kShmBaseLow = 0x0b8,
  kShmBaseHigh = 0x0bc,
  kConfigGeneration = 0x0fc,
};
constexpr uint32_t kInterruptUsedBuffer = 1;
constexpr uint32_t kInterruptConfigChange = 2;

void set_low(uint64_t& field, uint32_t value) { field = (field & ~0xffffffffull) | value; }
void set_high(uint64_t& field, uint32_t value) { field = (field & 0xffffffffull) | uint64_t{value} << 32; }
}  // namespace

Result<std::shared_ptr<VirtioMmioDevice>> VirtioMmioDevice::create(std::shared_ptr<VirtioDevice> device,
                                                                   GuestMemory& memory, IrqLine irq) {
  if (!device) return Error(ErrorCode::kInvalidArgument, "virtio-mmio: no device");
  HV_TRY(VirtioTransportCore::validate(*device, kMaxQueues));
  if (device->config_size() > kSize - kConfigOffset)
    return Error(ErrorCode::kInvalidArgument,
                 std::string(device->name()) + ": device config space too large for virtio-mmio");
  return std::shared_ptr<VirtioMmioDevice>(new VirtioMmioDevice(std::move(device), memory, irq));
}

VirtioMmioDevice::VirtioMmioDevice(std::shared_ptr<VirtioDevice> device, GuestMemory& memory, IrqLine irq)
    : name_("virtio-mmio-" + std::string(device->name())), core_(device, memory, *this), irq_(irq) {}

VirtioMmioDevice::State VirtioMmioDevice::save() {
  std::lock_guard lock(mutex_);
  std::lock_guard irq(irq_mutex_);
  return State{core_.save(),  device_features_select_, driver_features_select_,
               queue_select_, interrupt_status_,       config_generation_};
}

Result<void> VirtioMmioDevice::restore(const State& state) {
  std::lock_guard lock(mutex_);
  device_features_select_ = state.device_features_select;
  driver_features_select_ = state.driver_features_select;
  queue_select_ = state.queue_select;
  {
    std::lock_guard irq(irq_mutex_);
    interrupt_status_ = state.interrupt_status & (kInterruptUsedBuffer | kInterruptConfigChange);
    config_generation_ = state.config_generation;
    irq_.set_level(interrupt_status_ != 0);
  }
  return core_.restore(state.core);
}

void VirtioMmioDevice::read(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  if (offset >= kConfigOffset) {
    const uint64_t at = offset - kConfigOffset;
    const uint64_t size = core_.device().config_size();
    std::fill(data.begin(), data.end(), 0);
    if (at < size && data.size() <= size - at) core_.device().read_config(at, data);
    return;
  }
  // Registers: 32-bit aligned accesses only (4.2.2.2); anything else reads 0.
  uint32_t v = 0;
  if (data.size() == 4 && offset % 4 == 0) v = read_register(offset);
  std::fill(data.begin(), data.end(), 0);
  std::memcpy(data.data(), &v, std::min<size_t>(4, data.size()));
}

void VirtioMmioDevice::write(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mutex_);
  if (offset >= kConfigOffset) {
    const uint64_t at = offset - kConfigOffset;
    const uint64_t size = core_.device().config_size();
    if (at < size && data.size() <= size - at) core_.device().write_config(at, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return;
  uint32_t v;
  std::memcpy(&v, data.data(), 4);
  write_register(offset, v);
}

uint32_t VirtioMmioDevice::read_register(uint64_t offset) {
  const VirtioTransportCore::QueueConfig* q = core_.queue(queue_select_);
  switch (offset) {
    case kMagicValue: return kMagic;
    case kVersionReg: return kVersion;
    case kDeviceId: return core_.device().device_type();
    case kVendorIdReg: return kVendorId;
    case kDeviceFeatures: return core_.device_features_word(device_features_select_);
    case kQueueNumMax: return core_.queue_max_size(queue_select_);
    case kQueueReady: return q && q->enabled ? 1 : 0;
    case kInterruptStatus: {
      std::lock_guard irq(irq_mutex_);
      return interrupt_status_;
    }
    case kStatus: return core_.status();
    case kShmLenLow:
    case kShmLenHigh: return 0xffffffff;  // no shared memory regions
    case kConfigGeneration: {
      std::lock_guard irq(irq_mutex_);
      return config_generation_;
    }
    default: return 0;
  }
}

void VirtioMmioDevice::write_register(uint64_t offset, uint32_t value) {
  VirtioTransportCore::QueueConfig* q = core_.queue(queue_select_);
  const bool writable_queue = q && !q->enabled;
  switch (offset) {
    case kDeviceFeaturesSel: device_features_select_ = value; break;
    case kDriverFeatures: core_.set_driver_features_word(driver_features_select_, value); break;
    case kDriverFeaturesSel: driver_features_select_ = value; break;
    case kQueueSel: queue_select_ = static_cast<uint16_t>(std::min<uint32_t>(value, 0xffff)); break;
    case kQueueNum:
      if (writable_queue) q->size = static_cast<uint16_t>(std::min<uint32_t>(value, 0xffff));
      break;
    case kQueueReady:
      if (writable_queue && value == 1) core_.enable_queue(queue_select_);
      break;
    case kQueueNotify:
      if (value < 0x10000) core_.notify(static_cast<uint16_t>(value));
      break;
    case kInterruptAck: {
      std::lock_guard irq(irq_mutex_);
      interrupt_status_ &= ~value;
      irq_.set_level(interrupt_status_ != 0);
      break;
    }
    case kStatus:
      if (core_.write_status(static_cast<uint8_t>(value))) {
        device_features_select_ = driver_features_select_ = 0;
        queue_select_ = 0;
        std::lock_guard irq(irq_mutex_);
        interrupt_status_ = 0;
        irq_.set_level(false);
      }
      break;
    case kQueueDescLow:
      if (writable_queue) set_low(q->desc, value);
      break;
    case kQueueDescHigh:
      if (writable_queue) set_high(q->desc, value);
      break;
    case kQueueDriverLow:
      if (writable_queue) set_low(q->driver, value);
      break;
    case kQueueDriverHigh:
      if (writable_queue) set_high(q->driver, value);
      break;
    case kQueueDeviceLow:
      if (writable_queue) set_low(q->device, value);
      break;
    case kQueueDeviceHigh:
      if (writable_queue) set_high(q->device, value);
      break;
    default: break;  // read-only or unknown registers (including SHMSel: there are no regions)
  }
}

void VirtioMmioDevice::notify_queue(uint16_t queue) {
  std::lock_guard lock(mutex_);
  core_.notify(queue);
}

void VirtioMmioDevice::raise_locked(uint32_t bits) {
  interrupt_status_ |= bits;
  irq_.set_level(true);
}

void VirtioMmioDevice::signal_used(uint16_t) {
  std::lock_guard irq(irq_mutex_);
  raise_locked(kInterruptUsedBuffer);
}

void VirtioMmioDevice::signal_config_change() {
  std::lock_guard irq(irq_mutex_);
  ++config_generation_;
  raise_locked(kInterruptConfigChange);
}

void VirtioMmioDevice::signal_needs_reset(const Error& reason) {
  std::lock_guard irq(irq_mutex_);
  if (!core_.mark_needs_reset()) return;
  HV_LOG_WARN_LIMITED("{}: device needs reset: {}", name_, reason.message());
  raise_locked(kInterruptConfigChange);
}

void VirtioMmioDevice::encode_state(StateWriter& out, const State& s) {
  VirtioTransportCore::encode_state(out, s.core);
  out.put(s.device_features_select);
  out.put(s.driver_features_select);
  out.put(s.queue_select);
  out.put(s.interrupt_status);
  out.put(s.config_generation);
}

VirtioMmioDevice::State VirtioMmioDevice::decode_state(StateReader& in) {
  State s;
  s.core = VirtioTransportCore::decode_state(in);
  s.device_features_select = in.get<uint32_t>();
  s.driver_features_select = in.get<uint32_t>();
  s.queue_select = in.get<uint16_t>();
  s.interrupt_status = in.get<uint32_t>();
  s.config_generation = in.get<uint32_t>();
  return s;
}

}  // namespace hostvisor
