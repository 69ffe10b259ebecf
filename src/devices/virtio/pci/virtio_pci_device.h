// The virtio-pci modern transport (virtio 1.2, 4.1), non-transitional: a
// PCI function (1af4:1040+type) whose 64-bit memory BAR 0 holds every
// virtio structure, found through vendor-specific capabilities:
//
//   BAR0 + 0x0000  common configuration (struct virtio_pci_common_cfg)
//   BAR0 + 0x1000  ISR status (read-to-clear)
//   BAR0 + 0x2000  device-specific configuration
//   BAR0 + 0x3000  notifications: queue q at 0x3000 + 4 * q (multiplier 4)
//   BAR0 + 0x4000  MSI-X table (queue_count + 1 vectors), PBA at 0x6000
//
// plus the VIRTIO_PCI_CAP_PCI_CFG window in config space. It negotiates
// features, collects the queue layout, validates it into Virtqueues and
// activates the VirtioDevice at DRIVER_OK; interrupts go out as MSI-X when the
// driver enabled it (through the routes of an MsiRouter where the machine set
// one, e.g. KVM irqfds), else as INTx with the ISR.
//
// Locking: `mutex_` serialises the guest's register accesses and lifecycle
// (activate/reset/notify); `irq_mutex_` guards interrupt state, which device
// threads touch through VirtioInterrupt. Order: mutex_ -> device -> irq_mutex_
// (-> the MsiRouter's backend calls, which take no device lock). Queue
// notifications arrive either as BAR writes on a vCPU thread or, with an
// ioeventfd, as notify_queue() on the event loop; both take mutex_.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "base/state_codec.h"
#include "devices/bus/irq_line.h"
#include "devices/pci/msix.h"
#include "devices/pci/pci_device.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtio_transport_core.h"
#include "memory/guest_memory.h"

namespace hostvisor {

class VirtioPciDevice : public PciDevice, private VirtioInterrupt {
 public:
  static constexpr int kBar = 0;
  static constexpr uint64_t kBarSize = 0x8000;
  static constexpr uint64_t kCommonCfgOffset = 0x0000;
  static constexpr uint64_t kCommonCfgSize = 0x38;
  static constexpr uint64_t kIsrOffset = 0x1000;
  static constexpr uint64_t kDeviceCfgOffset = 0x2000;
  static constexpr uint64_t kDeviceCfgMaxSize = 0x1000;
  static constexpr uint64_t kNotifyOffset = 0x3000;
  static constexpr uint32_t kNotifyOffMultiplier = 4;
  static constexpr uint64_t kMsixTableOffset = 0x4000;
  static constexpr uint64_t kMsixPbaOffset = 0x6000;
  static constexpr uint16_t kMaxQueues = 1024;  // notify region and MSI-X table bound

  // `memory` must outlive the device. Fails if the device asks for more
  // queues or config space than the BAR layout holds.
  static Result<std::shared_ptr<VirtioPciDevice>> create(std::shared_ptr<VirtioDevice> device, GuestMemory& memory);

  std::string_view name() const override { return name_; }
  uint32_t config_read(uint16_t offset, unsigned size) override;
  void config_write(uint16_t offset, unsigned size, uint32_t value) override;
  void bar_read(int bar, uint64_t offset, std::span<uint8_t> data) override;
  void bar_write(int bar, uint64_t offset, std::span<const uint8_t> data) override;
  void attached(const PciAttachment& attachment) override;
  void bar_moved(int bar, std::optional<uint64_t> old_address, std::optional<uint64_t> new_address) override;
  PciConfigSpace& config_space() override { return config_; }

  // Guest-physical address the driver writes to notify `queue`, while BAR 0
  // decodes (for a KVM ioeventfd that calls notify_queue() from the event loop).
  std::optional<uint64_t> notify_address(uint16_t queue) const;
  // What a write to that address does: runs the device's queue processing.
  // Thread-safe (the event loop calls it while vCPUs access registers).
  void notify_queue(uint16_t queue);
  // Offset of queue `queue`'s notify register in BAR 0. The driver writes
  // the 16-bit queue index there (VIRTIO_F_NOTIFICATION_DATA is not offered).
  static constexpr uint64_t notify_offset(uint16_t queue) {
    return kNotifyOffset + uint64_t{kNotifyOffMultiplier} * queue;
  }
  uint16_t queue_count() const { return queue_count_; }

  // MSI-X vectors go out through routes of `router` (KVM irqfds) where it
  // can; nullptr goes back to the interrupt controller and releases the
  // routes. The router must stay alive until it is replaced here.
  void set_msi_router(MsiRouter* router);

  uint8_t device_status() const;

  // Snapshot of the transport (config space, MSI-X, negotiation, queues).
  // Restore after the root has the device and before the guest runs; then
  // call PciRoot::refresh_mappings().
  struct State {
    PciConfigSpace::State config;
    Msix::State msix;
    VirtioTransportCore::State core;
    uint32_t device_feature_select = 0;
    uint32_t driver_feature_select = 0;
    uint16_t queue_select = 0;
    uint8_t isr = 0;
    uint8_t config_generation = 0;
    uint16_t config_msix_vector = 0xffff;
    std::vector<uint16_t> queue_msix_vectors;
  };
  State save() const;
  Result<void> restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  VirtioPciDevice(std::shared_ptr<VirtioDevice> device, GuestMemory& memory);
  Result<void> build_config_space();

  // VirtioInterrupt, for the device and the core.
  void signal_used(uint16_t queue) override;
  void signal_config_change() override;
  void signal_needs_reset(const Error& reason) override;

  void common_read(uint64_t offset, std::span<uint8_t> data);
  void common_write(uint64_t offset, std::span<const uint8_t> data);
  void apply_common_field(uint64_t field, uint64_t value);
  void bar_access_locked(uint64_t offset, std::span<uint8_t> data, bool is_write);

  // Interrupt helpers; caller holds irq_mutex_.
  void update_intx_locked();
  void raise_config_interrupt_locked();

  std::string name_;
  uint16_t queue_count_;

  mutable std::mutex mutex_;
  // --- guarded by mutex_
  VirtioTransportCore core_;
  uint32_t device_feature_select_ = 0;
  uint32_t driver_feature_select_ = 0;
  uint16_t queue_select_ = 0;
  std::optional<uint64_t> bar_address_;
  uint16_t pci_cfg_cap_ = 0;

  mutable std::mutex irq_mutex_;
  // --- guarded by irq_mutex_
  PciConfigSpace config_;
  Msix msix_;
  IrqLine intx_;
  uint8_t isr_ = 0;
  uint8_t config_generation_ = 0;
  uint16_t config_msix_vector_ = 0xffff;
  std::vector<uint16_t> queue_msix_vector_;
};

}  // namespace hostvisor
