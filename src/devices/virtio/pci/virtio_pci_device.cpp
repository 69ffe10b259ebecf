#include "devices/virtio/pci/virtio_pci_device.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "base/log.h"
#include "base/log_rate_limit.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {

namespace {

constexpr uint16_t kVirtioVendor = 0x1af4;
constexpr uint16_t kModernDeviceIdBase = 0x1040;
constexpr uint16_t kSubsystemId = 0x40;  // >= 0x40: non-transitional (4.1.2.1)

// 4.1.4 cfg_type values.
constexpr uint8_t kCapCommonCfg = 1;
constexpr uint8_t kCapNotifyCfg = 2;
constexpr uint8_t kCapIsrCfg = 3;
constexpr uint8_t kCapDeviceCfg = 4;
constexpr uint8_t kCapPciCfg = 5;

// Offsets of struct virtio_pci_common_cfg fields, with their widths.
struct CommonField {
  uint64_t offset;
  unsigned size;
};
constexpr std::array<CommonField, 16> kCommonFields = {{
    {0x00, 4},  // device_feature_select
    {0x04, 4},  // device_feature
    {0x08, 4},  // driver_feature_select
    {0x0c, 4},  // driver_feature
    {0x10, 2},  // config_msix_vector
    {0x12, 2},  // num_queues
    {0x14, 1},  // device_status
    {0x15, 1},  // config_generation
    {0x16, 2},  // queue_select
    {0x18, 2},  // queue_size
    {0x1a, 2},  // queue_msix_vector
    {0x1c, 2},  // queue_enable
    {0x1e, 2},  // queue_notify_off
    {0x20, 8},  // queue_desc
    {0x28, 8},  // queue_driver
    {0x30, 8},  // queue_device
}};

uint32_t pci_class_for(uint32_t type) {
  switch (type) {
    case virtio::kDeviceNet: return 0x020000;      // network, ethernet
    case virtio::kDeviceBlock: return 0x010000;    // storage, SCSI (what guests expect of virtio-blk)
    case virtio::kDeviceConsole: return 0x078000;  // communication, other
    default: return 0xff0000;                      // unassigned class
  }
}

template <typename T>
void put(std::array<uint8_t, VirtioPciDevice::kCommonCfgSize>& image, uint64_t offset, T value) {
  std::memcpy(image.data() + offset, &value, sizeof(T));
}

// A virtio_pci_cap body (from cap_len on): cap_len, cfg_type, bar, id, padding[2], offset, length.
std::vector<uint8_t> virtio_cap(uint8_t cap_len, uint8_t type, uint8_t bar, uint32_t offset, uint32_t length) {
  std::vector<uint8_t> body(cap_len - 2, 0);
  body[0] = cap_len;
  body[1] = type;
  body[2] = bar;
  std::memcpy(&body[6], &offset, 4);
  std::memcpy(&body[10], &length, 4);
  return body;
}

}  // namespace

Result<std::shared_ptr<VirtioPciDevice>> VirtioPciDevice::create(std::shared_ptr<VirtioDevice> device,
                                                                 GuestMemory& memory) {
  if (!device) return Error(ErrorCode::kInvalidArgument, "virtio-pci: no device");
  HV_TRY(VirtioTransportCore::validate(*device, kMaxQueues));
  if (device->config_size() > kDeviceCfgMaxSize)
    return Error(ErrorCode::kInvalidArgument, std::string(device->name()) + ": device config space too large");
  std::shared_ptr<VirtioPciDevice> pci(new VirtioPciDevice(std::move(device), memory));
  HV_TRY(pci->build_config_space());
  return pci;
}

VirtioPciDevice::VirtioPciDevice(std::shared_ptr<VirtioDevice> device, GuestMemory& memory)
    : name_("virtio-pci-" + std::string(device->name())),
      queue_count_(device->queue_count()),
      core_(device, memory, *this),
      config_(PciConfigSpace::Identity{.vendor_id = kVirtioVendor,
                                       .device_id = static_cast<uint16_t>(kModernDeviceIdBase + device->device_type()),
                                       .revision = 1,
                                       .class_code = pci_class_for(device->device_type()),
                                       .subsystem_vendor_id = kVirtioVendor,
                                       .subsystem_id = kSubsystemId}),
      msix_(static_cast<uint16_t>(queue_count_ + 1), kBar, kMsixTableOffset, kMsixPbaOffset),
      queue_msix_vector_(queue_count_, virtio::kNoVector) {}

Result<void> VirtioPciDevice::build_config_space() {
  HV_TRY(config_.add_bar(kBar, PciBarInfo{PciBarKind::kMemory64, kBarSize, false}));
  config_.set_interrupt_pin(1);  // INTA
  HV_TRY(config_.add_capability(pci_cap_id::kVendorSpecific,
                                virtio_cap(16, kCapCommonCfg, kBar, kCommonCfgOffset, kCommonCfgSize)));
  auto notify = virtio_cap(20, kCapNotifyCfg, kBar, kNotifyOffset, kNotifyOffMultiplier * queue_count_);
  std::memcpy(&notify[14], &kNotifyOffMultiplier, 4);
  HV_TRY(config_.add_capability(pci_cap_id::kVendorSpecific, notify));
  HV_TRY(config_.add_capability(pci_cap_id::kVendorSpecific, virtio_cap(16, kCapIsrCfg, kBar, kIsrOffset, 1)));
  if (core_.device().config_size() > 0) {
    HV_TRY(config_.add_capability(pci_cap_id::kVendorSpecific,
                                  virtio_cap(16, kCapDeviceCfg, kBar, kDeviceCfgOffset, core_.device().config_size())));
  }
  // VIRTIO_PCI_CAP_PCI_CFG: bar, offset, length and the data window are writable.
  auto pci_cfg = virtio_cap(20, kCapPciCfg, 0, 0, 0);
  std::vector<uint8_t> writable(pci_cfg.size(), 0);
  writable[2] = 0xff;                                                     // bar
  std::fill(writable.begin() + 6, writable.begin() + 18, uint8_t{0xff});  // offset, length, pci_cfg_data
  pci_cfg_cap_ = HV_TRY(config_.add_capability(pci_cap_id::kVendorSpecific, pci_cfg, writable));
  HV_TRY(msix_.install(config_));
  return ok();
}

void VirtioPciDevice::attached(const PciAttachment& attachment) {
  std::lock_guard irq(irq_mutex_);
  msix_.set_interrupt_controller(attachment.interrupts);
  intx_ = IrqLine(attachment.interrupts, attachment.intx_gsi);
}

void VirtioPciDevice::set_msi_router(MsiRouter* router) {
  std::lock_guard irq(irq_mutex_);
  msix_.set_msi_router(router);
}

void VirtioPciDevice::bar_moved(int bar, std::optional<uint64_t>, std::optional<uint64_t> new_address) {
  std::lock_guard lock(mutex_);
  if (bar == kBar) bar_address_ = new_address;
}

std::optional<uint64_t> VirtioPciDevice::notify_address(uint16_t queue) const {
  std::lock_guard lock(mutex_);
  if (!bar_address_ || queue >= queue_count_) return std::nullopt;
  return *bar_address_ + notify_offset(queue);
}

uint8_t VirtioPciDevice::device_status() const { return core_.status(); }

VirtioPciDevice::State VirtioPciDevice::save() const {
  std::lock_guard lock(mutex_);
  std::lock_guard irq(irq_mutex_);
  return State{config_.save(), msix_.save(), core_.save(),       device_feature_select_, driver_feature_select_,
               queue_select_,  isr_,         config_generation_, config_msix_vector_,    queue_msix_vector_};
}

Result<void> VirtioPciDevice::restore(const State& state) {
  std::lock_guard lock(mutex_);
  if (state.queue_msix_vectors.size() != queue_count_)
    return Error(ErrorCode::kCorrupt, name_ + ": snapshot has a different number of queues");
  {
    std::lock_guard irq(irq_mutex_);
    HV_TRY(config_.restore(state.config));
    HV_TRY(msix_.restore(state.msix));
    msix_.config_written(config_);
    auto vector = [&](uint16_t v) { return v < msix_.vector_count() ? v : virtio::kNoVector; };
    config_msix_vector_ = vector(state.config_msix_vector);
    for (uint16_t q = 0; q < queue_count_; ++q) queue_msix_vector_[q] = vector(state.queue_msix_vectors[q]);
    isr_ = state.isr & 3;
    config_generation_ = state.config_generation;
    update_intx_locked();
  }
  device_feature_select_ = state.device_feature_select;
  driver_feature_select_ = state.driver_feature_select;
  queue_select_ = state.queue_select;
  return core_.restore(state.core);
}

// ---------------------------------------------------------------- config space

uint32_t VirtioPciDevice::config_read(uint16_t offset, unsigned size) {
  std::lock_guard lock(mutex_);
  const uint16_t data = pci_cfg_cap_ + 16;
  if (offset < data + 4 && offset + size > data) {
    // pci_cfg_data: read `length` bytes of the BAR at `offset` into the window.
    uint8_t bar;
    uint32_t bar_offset, length;
    {
      std::lock_guard irq(irq_mutex_);
      bar = config_.raw_u8(pci_cfg_cap_ + 4);
      bar_offset = config_.raw_u32(pci_cfg_cap_ + 8);
      length = config_.raw_u32(pci_cfg_cap_ + 12);
    }
    if (bar == kBar && (length == 1 || length == 2 || length == 4) && bar_offset % length == 0 &&
        bar_offset < kBarSize) {
      uint8_t bytes[4] = {};
      bar_access_locked(bar_offset, std::span(bytes, length), false);
      uint32_t v = 0;
      std::memcpy(&v, bytes, 4);
      std::lock_guard irq(irq_mutex_);
      config_.set_raw_u32(data, v);
    }
  }
  std::lock_guard irq(irq_mutex_);
  return config_.read(offset, size);
}

void VirtioPciDevice::config_write(uint16_t offset, unsigned size, uint32_t value) {
  std::lock_guard lock(mutex_);
  const uint16_t data = pci_cfg_cap_ + 16;
  uint8_t bar;
  uint32_t bar_offset, length, window;
  {
    std::lock_guard irq(irq_mutex_);
    config_.write(offset, size, value);
    msix_.config_written(config_);
    update_intx_locked();  // Interrupt Disable may have changed
    bar = config_.raw_u8(pci_cfg_cap_ + 4);
    bar_offset = config_.raw_u32(pci_cfg_cap_ + 8);
    length = config_.raw_u32(pci_cfg_cap_ + 12);
    window = config_.raw_u32(data);
  }
  if (offset < data + 4 && offset + size > data && bar == kBar && (length == 1 || length == 2 || length == 4) &&
      bar_offset % length == 0 && bar_offset < kBarSize) {
    uint8_t bytes[4];
    std::memcpy(bytes, &window, 4);
    bar_access_locked(bar_offset, std::span(bytes, length), true);
  }
}

// ---------------------------------------------------------------- BAR

void VirtioPciDevice::bar_read(int bar, uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(mutex_);
  if (bar != kBar) {
    std::fill(data.begin(), data.end(), 0xff);
    return;
  }
  bar_access_locked(offset, data, false);
}

void VirtioPciDevice::bar_write(int bar, uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mutex_);
  if (bar != kBar) return;
  // bar_access_locked only reads from `data` when writing.
  bar_access_locked(offset, std::span(const_cast<uint8_t*>(data.data()), data.size()), true);
}

void VirtioPciDevice::bar_access_locked(uint64_t offset, std::span<uint8_t> data, bool is_write) {
  const uint64_t len = data.size();
  auto inside = [&](uint64_t start, uint64_t size) {
    return offset >= start && offset - start < size && len <= size - (offset - start);
  };
  if (inside(kCommonCfgOffset, kCommonCfgSize)) {
    if (is_write) {
      common_write(offset - kCommonCfgOffset, data);
    } else {
      common_read(offset - kCommonCfgOffset, data);
    }
    return;
  }
  if (offset == kIsrOffset && !is_write) {
    // Reading the ISR clears it and drops the INTx line (4.1.4.5).
    std::lock_guard irq(irq_mutex_);
    std::fill(data.begin(), data.end(), 0);
    data[0] = isr_;
    isr_ = 0;
    update_intx_locked();
    return;
  }
  if (inside(kDeviceCfgOffset, core_.device().config_size())) {
    if (is_write) {
      core_.device().write_config(offset - kDeviceCfgOffset, data);
    } else {
      core_.device().read_config(offset - kDeviceCfgOffset, data);
    }
    return;
  }
  if (inside(kNotifyOffset, uint64_t{kNotifyOffMultiplier} * queue_count_)) {
    if (is_write) core_.notify(static_cast<uint16_t>((offset - kNotifyOffset) / kNotifyOffMultiplier));
    if (!is_write) std::fill(data.begin(), data.end(), 0);
    return;
  }
  {
    std::lock_guard irq(irq_mutex_);
    if (msix_.in_table(offset, len)) {
      if (is_write) {
        msix_.table_write(offset, data);
      } else {
        msix_.table_read(offset, data);
      }
      return;
    }
    if (msix_.in_pba(offset, len)) {
      if (!is_write) msix_.pba_read(offset, data);
      return;  // the PBA is read-only
    }
  }
  if (!is_write) std::fill(data.begin(), data.end(), 0);
}

// ---------------------------------------------------------------- common cfg

void VirtioPciDevice::common_read(uint64_t offset, std::span<uint8_t> data) {
  std::array<uint8_t, kCommonCfgSize> image{};
  put<uint32_t>(image, 0x00, device_feature_select_);
  put<uint32_t>(image, 0x04, core_.device_features_word(device_feature_select_));
  put<uint32_t>(image, 0x08, driver_feature_select_);
  put<uint32_t>(image, 0x0c, core_.driver_features_word(driver_feature_select_));
  put<uint16_t>(image, 0x12, queue_count_);
  put<uint8_t>(image, 0x14, core_.status());
  put<uint16_t>(image, 0x16, queue_select_);
  {
    std::lock_guard irq(irq_mutex_);
    put<uint16_t>(image, 0x10, config_msix_vector_);
    put<uint8_t>(image, 0x15, config_generation_);
    put<uint16_t>(image, 0x1a, queue_select_ < queue_count_ ? queue_msix_vector_[queue_select_] : virtio::kNoVector);
  }
  if (const VirtioTransportCore::QueueConfig* q = core_.queue(queue_select_)) {
    put<uint16_t>(image, 0x18, q->size);
    put<uint16_t>(image, 0x1c, q->enabled ? 1 : 0);
    put<uint16_t>(image, 0x1e, queue_select_);  // notify offset, in units of the multiplier
    put<uint64_t>(image, 0x20, q->desc);
    put<uint64_t>(image, 0x28, q->driver);
    put<uint64_t>(image, 0x30, q->device);
  }
  std::memcpy(data.data(), image.data() + offset, data.size());
}

void VirtioPciDevice::common_write(uint64_t offset, std::span<const uint8_t> data) {
  // Merge the write into the current register image, then apply every field
  // it touched, so any access width (drivers write 64-bit fields as two
  // dwords) works the same.
  std::array<uint8_t, kCommonCfgSize> image{};
  common_read(0, image);
  std::memcpy(image.data() + offset, data.data(), data.size());
  for (const CommonField& f : kCommonFields) {
    if (f.offset >= offset + data.size() || f.offset + f.size <= offset) continue;
    uint64_t value = 0;
    std::memcpy(&value, image.data() + f.offset, f.size);
    apply_common_field(f.offset, value);
  }
}

void VirtioPciDevice::apply_common_field(uint64_t field, uint64_t value) {
  VirtioTransportCore::QueueConfig* q = core_.queue(queue_select_);
  const bool writable_queue = q && !q->enabled;
  switch (field) {
    case 0x00: device_feature_select_ = static_cast<uint32_t>(value); break;
    case 0x08: driver_feature_select_ = static_cast<uint32_t>(value); break;
    case 0x0c: core_.set_driver_features_word(driver_feature_select_, static_cast<uint32_t>(value)); break;
    case 0x10: {
      std::lock_guard irq(irq_mutex_);
      // A vector the table does not have reads back as NO_VECTOR (4.1.5.1.2).
      config_msix_vector_ = value < msix_.vector_count() ? static_cast<uint16_t>(value) : virtio::kNoVector;
      break;
    }
    case 0x14:
      if (core_.write_status(static_cast<uint8_t>(value))) {
        // Reset: the transport's registers go back to their initial values too.
        device_feature_select_ = driver_feature_select_ = 0;
        queue_select_ = 0;
        std::lock_guard irq(irq_mutex_);
        isr_ = 0;
        config_msix_vector_ = virtio::kNoVector;
        std::fill(queue_msix_vector_.begin(), queue_msix_vector_.end(), virtio::kNoVector);
        update_intx_locked();
      }
      break;
    case 0x16: queue_select_ = static_cast<uint16_t>(value); break;
    case 0x18:
      if (writable_queue) q->size = static_cast<uint16_t>(value);
      break;
    case 0x1a:
      if (q) {
        std::lock_guard irq(irq_mutex_);
        queue_msix_vector_[queue_select_] =
            value < msix_.vector_count() ? static_cast<uint16_t>(value) : virtio::kNoVector;
      }
      break;
    case 0x1c:
      // Only 1 may be written; disabling a queue is queue_reset's job, which we do not offer.
      if (writable_queue && value == 1) core_.enable_queue(queue_select_);
      break;
    case 0x20:
      if (writable_queue) q->desc = value;
      break;
    case 0x28:
      if (writable_queue) q->driver = value;
      break;
    case 0x30:
      if (writable_queue) q->device = value;
      break;
    default: break;  // read-only fields
  }
}

// ---------------------------------------------------------------- notify / interrupts

void VirtioPciDevice::notify_queue(uint16_t queue) {
  std::lock_guard lock(mutex_);
  core_.notify(queue);
}

void VirtioPciDevice::update_intx_locked() {
  config_.set_interrupt_status(isr_ != 0);
  // With MSI-X enabled the function must not use its INTx pin (PCI 3.0, 6.8.3.3).
  intx_.set_level(isr_ != 0 && !msix_.enabled() && !(config_.command() & pci_command::kInterruptDisable));
}

void VirtioPciDevice::raise_config_interrupt_locked() {
  if (msix_.enabled()) {
    if (config_msix_vector_ != virtio::kNoVector) msix_.signal(config_msix_vector_);
    return;
  }
  isr_ |= 2;
  update_intx_locked();
}

void VirtioPciDevice::signal_used(uint16_t queue) {
  std::lock_guard irq(irq_mutex_);
  if (queue >= queue_count_) return;
  if (msix_.enabled()) {
    if (queue_msix_vector_[queue] != virtio::kNoVector) msix_.signal(queue_msix_vector_[queue]);
    return;
  }
  isr_ |= 1;
  update_intx_locked();
}

void VirtioPciDevice::signal_config_change() {
  std::lock_guard irq(irq_mutex_);
  ++config_generation_;
  raise_config_interrupt_locked();
}

void VirtioPciDevice::signal_needs_reset(const Error& reason) {
  std::lock_guard irq(irq_mutex_);
  if (!core_.mark_needs_reset()) return;
  HV_LOG_WARN_LIMITED("{}: device needs reset: {}", name_, reason.message());
  // The driver learns of it through the configuration change interrupt (2.1.2).
  raise_config_interrupt_locked();
}

void VirtioPciDevice::encode_state(StateWriter& out, const State& s) {
  PciConfigSpace::encode_state(out, s.config);
  Msix::encode_state(out, s.msix);
  VirtioTransportCore::encode_state(out, s.core);
  out.put(s.device_feature_select);
  out.put(s.driver_feature_select);
  out.put(s.queue_select);
  out.put(s.isr);
  out.put(s.config_generation);
  out.put(s.config_msix_vector);
  out.put(static_cast<uint32_t>(s.queue_msix_vectors.size()));
  for (uint16_t vector : s.queue_msix_vectors) out.put(vector);
}

VirtioPciDevice::State VirtioPciDevice::decode_state(StateReader& in) {
  State s;
  s.config = PciConfigSpace::decode_state(in);
  s.msix = Msix::decode_state(in);
  s.core = VirtioTransportCore::decode_state(in);
  s.device_feature_select = in.get<uint32_t>();
  s.driver_feature_select = in.get<uint32_t>();
  s.queue_select = in.get<uint16_t>();
  s.isr = in.get<uint8_t>();
  s.config_generation = in.get<uint8_t>();
  s.config_msix_vector = in.get<uint16_t>();
  const uint32_t vectors = in.get<uint32_t>();
  if (vectors > 1024) in.fail(std::to_string(vectors) + " queue vectors");
  for (uint32_t i = 0; i < vectors && in.ok(); ++i) s.queue_msix_vectors.push_back(in.get<uint16_t>());
  return s;
}

}  // namespace hostvisor
