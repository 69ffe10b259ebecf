#include "hv/emu/platform/io_apic.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "hv/emu/platform/apic_bus.h"
#include "hv/emu/platform/local_apic.h"

namespace hostvisor::emu {
namespace {

class IoApicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (unsigned i = 0; i < 2; ++i) {
      lapics_.push_back(std::make_unique<LocalApic>(i, i == 0, bus_, timers_));
      bus_.add(*lapics_.back());
      uint32_t svr = 0x1ff;
      uint8_t b[4];
      std::memcpy(b, &svr, 4);
      lapics_.back()->mmio_write(LocalApic::kRegSvr, b);
    }
    bus_.set_io_apic(&io_apic_);
  }

  void select(uint8_t index) {
    const uint8_t b[1] = {index};
    io_apic_.mmio_write(IoApic::kRegSelect, b);
  }
  uint32_t read_reg(uint8_t index) {
    select(index);
    uint8_t b[4];
    io_apic_.mmio_read(IoApic::kRegWindow, b);
    uint32_t v;
    std::memcpy(&v, b, 4);
    return v;
  }
  void write_reg(uint8_t index, uint32_t v) {
    select(index);
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    io_apic_.mmio_write(IoApic::kRegWindow, b);
  }
  void program(unsigned pin, uint64_t entry) {
    write_reg(static_cast<uint8_t>(0x11 + 2 * pin), static_cast<uint32_t>(entry >> 32));
    write_reg(static_cast<uint8_t>(0x10 + 2 * pin), static_cast<uint32_t>(entry));
  }
  void eoi(LocalApic& l) {
    const uint8_t zero[4] = {};
    l.mmio_write(LocalApic::kRegEoi, zero);
  }

  ManualClock clock_;
  PlatformTimers timers_{clock_};
  ApicBus bus_;
  IoApic io_apic_{bus_, 3};
  std::vector<std::unique_ptr<LocalApic>> lapics_;
};

TEST_F(IoApicTest, IdentificationRegisters) {
  EXPECT_EQ(read_reg(0x01), 0x170011u);
  EXPECT_EQ(read_reg(0x00), 3u << 24);
  EXPECT_EQ(read_reg(0x02), 3u << 24);
  write_reg(0x00, 5u << 24);
  EXPECT_EQ(read_reg(0x00), 5u << 24);
  write_reg(0x01, 0);  // read-only
  EXPECT_EQ(read_reg(0x01), 0x170011u);
  EXPECT_EQ(read_reg(0x70), 0u);  // beyond the table
  uint8_t sel[1];
  select(0x12);
  io_apic_.mmio_read(IoApic::kRegSelect, sel);
  EXPECT_EQ(sel[0], 0x12);
}

TEST_F(IoApicTest, EntriesResetMaskedAndKeepReadOnlyBits) {
  for (unsigned pin = 0; pin < IoApic::kPins; ++pin) EXPECT_EQ(io_apic_.redirection_entry(pin), IoApic::kEntryMasked);
  program(4, (uint64_t{1} << 56) | IoApic::kEntryRemoteIrr | IoApic::kEntryDeliveryStatus | 0x34);
  EXPECT_EQ(io_apic_.redirection_entry(4), (uint64_t{1} << 56) | 0x34);
  EXPECT_EQ(read_reg(0x18), 0x34u);
  EXPECT_EQ(read_reg(0x19), 1u << 24);
}

TEST_F(IoApicTest, EdgeTriggeredDeliversOncePerRisingEdgeToTheRightApic) {
  program(4, (uint64_t{1} << 56) | 0x34);
  io_apic_.set_irq(4, true);
  EXPECT_EQ(lapics_[1]->take_interrupt(), std::optional<uint8_t>(0x34));
  EXPECT_FALSE(lapics_[0]->has_interrupt());
  eoi(*lapics_[1]);
  io_apic_.set_irq(4, true);  // still high: no edge
  EXPECT_FALSE(lapics_[1]->has_interrupt());
  io_apic_.set_irq(4, false);
  io_apic_.set_irq(4, true);
  EXPECT_EQ(lapics_[1]->take_interrupt(), std::optional<uint8_t>(0x34));
}

TEST_F(IoApicTest, LevelTriggeredUsesRemoteIrrUntilEoi) {
  program(16, IoApic::kEntryLevel | IoApic::kEntryActiveLow | 0x50);
  io_apic_.set_irq(16, true);
  EXPECT_TRUE(io_apic_.redirection_entry(16) & IoApic::kEntryRemoteIrr);
  LocalApic& bsp = *lapics_[0];
  EXPECT_EQ(bsp.take_interrupt(), std::optional<uint8_t>(0x50));
  // The line is still asserted, but remote IRR holds further messages.
  io_apic_.set_irq(16, true);
  EXPECT_FALSE(bsp.has_interrupt());
  // The level vector is in the TMR: EOI is broadcast, and the pin, still
  // asserted, interrupts again.
  eoi(bsp);
  EXPECT_EQ(bsp.take_interrupt(), std::optional<uint8_t>(0x50));
  EXPECT_TRUE(io_apic_.redirection_entry(16) & IoApic::kEntryRemoteIrr);
  // Deasserted before the EOI: nothing more.
  io_apic_.set_irq(16, false);
  eoi(bsp);
  EXPECT_FALSE(io_apic_.redirection_entry(16) & IoApic::kEntryRemoteIrr);
  EXPECT_FALSE(bsp.has_interrupt());
}

TEST_F(IoApicTest, MaskingLosesEdgesButHoldsLevels) {
  program(5, IoApic::kEntryMasked | 0x35);
  io_apic_.set_irq(5, true);
  io_apic_.set_irq(5, false);
  program(5, 0x35);
  EXPECT_FALSE(lapics_[0]->has_interrupt());

  program(17, IoApic::kEntryMasked | IoApic::kEntryLevel | 0x51);
  io_apic_.set_irq(17, true);
  EXPECT_FALSE(lapics_[0]->has_interrupt());
  program(17, IoApic::kEntryLevel | 0x51);  // unmasking an asserted level line delivers
  EXPECT_EQ(lapics_[0]->take_interrupt(), std::optional<uint8_t>(0x51));
}

TEST_F(IoApicTest, SwitchingToEdgeClearsAStaleRemoteIrr) {
  program(18, IoApic::kEntryLevel | 0x52);
  io_apic_.set_irq(18, true);
  ASSERT_TRUE(io_apic_.redirection_entry(18) & IoApic::kEntryRemoteIrr);
  program(18, 0x52);
  EXPECT_FALSE(io_apic_.redirection_entry(18) & IoApic::kEntryRemoteIrr);
}

TEST_F(IoApicTest, LogicalDestinationAndNmiDelivery) {
  uint8_t ldr[4];
  const uint32_t v = 0x02u << 24;
  std::memcpy(ldr, &v, 4);
  lapics_[1]->mmio_write(LocalApic::kRegLdr, ldr);
  program(6, (uint64_t{0x02} << 56) | (1u << 11) | 0x36);
  io_apic_.set_irq(6, true);
  EXPECT_EQ(lapics_[1]->take_interrupt(), std::optional<uint8_t>(0x36));
  EXPECT_FALSE(lapics_[0]->has_interrupt());

  program(7, (uint64_t{0} << 56) | (4u << 8));  // NMI to APIC 0
  io_apic_.set_irq(7, true);
  EXPECT_TRUE(lapics_[0]->take_nmi());
}

TEST_F(IoApicTest, OutOfRangeAccessesAreHarmless) {
  io_apic_.set_irq(24, true);
  io_apic_.set_irq(1000, true);
  EXPECT_EQ(io_apic_.redirection_entry(99), 0u);
  uint8_t b[8] = {};
  io_apic_.mmio_write(0x10, b);  // 8-byte window write: ignored
  io_apic_.mmio_read(0x20, b);
  io_apic_.mmio_write(0xfff, std::span(b, 1));
}

TEST_F(IoApicTest, SaveRestore) {
  program(9, IoApic::kEntryLevel | 0x59);
  io_apic_.set_irq(9, true);
  const IoApic::State s = io_apic_.save();
  IoApic other(bus_);
  other.restore(s);
  EXPECT_EQ(other.redirection_entry(9), io_apic_.redirection_entry(9));
  EXPECT_EQ(other.save().pin_levels, 1u << 9);
}

}  // namespace
}  // namespace hostvisor::emu
