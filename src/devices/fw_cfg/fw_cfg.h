// The fw_cfg device (fw_cfg_spec.h): items keyed by selector, named files
// listed in a directory, read byte by byte through the data port or in bulk
// through DMA descriptors in guest memory.
//
// The items are the machine's configuration: they are added while the
// machine is built and never change afterwards, so the device's State is
// only where the guest is reading (the selected item, the offset, the DMA
// address half it latched). Guest input is hostile: an unknown selector
// reads as zeros, a descriptor or buffer outside RAM fails the request with
// the DMA error bit (or, when even the descriptor cannot be written, is
// dropped), and nothing the guest does allocates host memory.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/state_codec.h"
#include "devices/bus/bus_device.h"
#include "devices/fw_cfg/fw_cfg_spec.h"
#include "memory/guest_memory.h"

namespace hostvisor {

class FwCfg final : public BusDevice {
 public:
  struct State {
    uint16_t selector = 0;
    uint32_t offset = 0;            // into the selected item
    uint32_t dma_address_high = 0;  // the high half of the DMA address, as last written
  };

  // `memory` is what DMA descriptors and buffers are read from and written
  // to; it must outlive the device. The signature and ID items are present
  // from the start.
  explicit FwCfg(GuestMemory& memory);

  std::string_view name() const override { return "fw_cfg"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Building the machine: sets the item at `key` (below kFileFirst, or
  // arch-local), replacing any earlier one.
  Result<void> set_item(uint16_t key, std::vector<uint8_t> data);
  // Adds a named file; its key is the next free one. Names are unique and
  // shorter than fw_cfg::kFileNameSize.
  Result<uint16_t> add_file(const std::string& name, std::vector<uint8_t> data);

  // What the guest would read for `key` (tests, the machine's log).
  std::vector<uint8_t> item(uint16_t key) const;
  // The key of a file, or nothing.
  std::optional<uint16_t> file_key(const std::string& name) const;

  State save() const;
  Result<void> restore(const State& state);
  // The State as snapshot bytes (state_codec.h).
  static constexpr uint32_t kStateVersion = 1;
  static void encode_state(StateWriter& out, const State& state);
  static State decode_state(StateReader& in);

 private:
  void select(uint16_t selector);
  const std::vector<uint8_t>* selected() const;
  // Runs the descriptor at `address`; the guest sees the outcome in its
  // control field.
  void run_dma(uint64_t address);
  // READ, SKIP or WRITE of `length` bytes at `buffer` from the selected
  // item; false when the guest's request fails.
  bool transfer(uint32_t control, uint32_t length, uint64_t buffer);
  void rebuild_directory();

  GuestMemory& memory_;
  mutable std::mutex mutex_;
  std::map<uint16_t, std::vector<uint8_t>> items_;
  std::map<std::string, uint16_t> files_;  // by name: the directory is sorted, as QEMU's is
  uint16_t next_file_key_ = fw_cfg::kFileFirst;
  uint16_t selector_ = 0;
  uint32_t offset_ = 0;
  uint32_t dma_address_high_ = 0;
};

}  // namespace hostvisor
