// The virtio-mmio transport, version 2 (virtio 1.2, 4.2): a 0x200-byte
// register block on the MMIO bus plus one interrupt line. Linux finds it
// through "virtio_mmio.device=512@<base>:<gsi>" on the command line or an
// ACPI/DT node. Registers are 32-bit wide; device config starts at 0x100.
// The line is level-triggered and follows InterruptStatus != 0.
//
// Locking as in VirtioPciDevice: `mutex_` for register accesses and the
// lifecycle, `irq_mutex_` for interrupt state reached from device threads.
#pragma once

#include <memory>
#include <mutex>

#include "base/state_codec.h"
#include "devices/bus/bus_device.h"
#include "devices/bus/irq_line.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtio_transport_core.h"
#include "memory/guest_memory.h"

namespace hostvisor {

class VirtioMmioDevice : public BusDevice, private VirtioInterrupt {
 public:
  static constexpr uint64_t kSize = 0x200;
  static constexpr uint64_t kConfigOffset = 0x100;
  static constexpr uint32_t kMagic = 0x74726976;  // "virt"
  static constexpr uint32_t kVersion = 2;
  static constexpr uint32_t kVendorId = 0x52535648;  // "HVSR"
  static constexpr uint16_t kMaxQueues = 1024;

  // `memory` must outlive the device; `irq` is its interrupt line.
  static Result<std::shared_ptr<VirtioMmioDevice>> create(std::shared_ptr<VirtioDevice> device, GuestMemory& memory,
                                                          IrqLine irq);

  std::string_view name() const override { return name_; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // What a write of `queue` to QueueNotify does (for an ioeventfd path).
  void notify_queue(uint16_t queue);
  uint8_t device_status() const { return core_.status(); }

  struct State {
    VirtioTransportCore::State core;
    uint32_t device_features_select = 0;
    uint32_t driver_features_select = 0;
    uint16_t queue_select = 0;
    uint32_t interrupt_status = 0;
    uint32_t config_generation = 0;
  };
  State save();
  Result<void> restore(const State& state);
  // The State as snapshot bytes (state_codec.h); decode_state leaves
  // range checks to restore().
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  VirtioMmioDevice(std::shared_ptr<VirtioDevice> device, GuestMemory& memory, IrqLine irq);

  void signal_used(uint16_t queue) override;
  void signal_config_change() override;
  void signal_needs_reset(const Error& reason) override;

  uint32_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint32_t value);
  void raise_locked(uint32_t bits);

  std::string name_;
  std::mutex mutex_;
  // --- guarded by mutex_
  VirtioTransportCore core_;
  uint32_t device_features_select_ = 0;
  uint32_t driver_features_select_ = 0;
  uint16_t queue_select_ = 0;

  std::mutex irq_mutex_;
  // --- guarded by irq_mutex_
  IrqLine irq_;
  uint32_t interrupt_status_ = 0;
  uint32_t config_generation_ = 0;
};

}  // namespace hostvisor
