#include "hv/emu/platform/pic.h"

#include <gtest/gtest.h>

#include <vector>

namespace hostvisor::emu {
namespace {

class PicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pic_.set_intr_callback([this](bool level) { intr_changes_.push_back(level); });
    init_like_linux();
  }

  // Linux's init_8259A(): mask everything, ICW1-4 on both chips (vector
  // bases 0x30 and 0x38, slave on IR2, 8086 mode), then unmask.
  void init_like_linux(uint8_t icw4 = 0x01) {
    pic_.write_port(0x21, 0xff);
    pic_.write_port(0xa1, 0xff);
    pic_.write_port(0x20, 0x11);
    pic_.write_port(0x21, 0x30);
    pic_.write_port(0x21, 0x04);
    pic_.write_port(0x21, icw4);
    pic_.write_port(0xa0, 0x11);
    pic_.write_port(0xa1, 0x38);
    pic_.write_port(0xa1, 0x02);
    pic_.write_port(0xa1, icw4);
    pic_.write_port(0x21, 0x00);
    pic_.write_port(0xa1, 0x00);
  }

  void pulse(unsigned irq) {
    pic_.set_irq(irq, true);
    pic_.set_irq(irq, false);
  }
  uint8_t isr(uint16_t command_port) {
    pic_.write_port(command_port, 0x0b);
    const uint8_t v = pic_.read_port(command_port);
    pic_.write_port(command_port, 0x0a);
    return v;
  }

  Pic pic_;
  std::vector<bool> intr_changes_;
};

TEST_F(PicTest, InitialisationAndImr) {
  EXPECT_FALSE(pic_.intr());
  EXPECT_EQ(pic_.read_port(0x21), 0x00);
  pic_.write_port(0x21, 0xfb);
  EXPECT_EQ(pic_.read_port(0x21), 0xfb);
  pulse(1);
  EXPECT_FALSE(pic_.intr());              // masked: held in IRR
  EXPECT_EQ(pic_.read_port(0x20), 0x02);  // OCW3 default: IRR
  pic_.write_port(0x21, 0x00);
  EXPECT_TRUE(pic_.intr());
}

TEST_F(PicTest, AcknowledgeEoiAndIntrCallback) {
  intr_changes_.clear();
  pulse(1);
  EXPECT_TRUE(pic_.intr());
  EXPECT_EQ(intr_changes_, std::vector<bool>{true});
  EXPECT_EQ(pic_.acknowledge(), 0x31);
  EXPECT_FALSE(pic_.intr());
  EXPECT_EQ(isr(0x20), 0x02);
  EXPECT_EQ(pic_.read_port(0x20), 0x00);  // IRR cleared by INTA
  pic_.write_port(0x20, 0x20);            // non-specific EOI
  EXPECT_EQ(isr(0x20), 0x00);
  EXPECT_EQ(intr_changes_, (std::vector<bool>{true, false}));
}

TEST_F(PicTest, FullyNestedPriorities) {
  pulse(3);
  pulse(1);
  EXPECT_EQ(pic_.acknowledge(), 0x31);
  EXPECT_FALSE(pic_.intr());  // IRQ 3 is lower priority than IRQ 1 in service
  pulse(0);
  EXPECT_TRUE(pic_.intr());  // IRQ 0 preempts
  EXPECT_EQ(pic_.acknowledge(), 0x30);
  EXPECT_EQ(isr(0x20), 0x03);
  pic_.write_port(0x20, 0x20);  // ends IRQ 0 (highest in service)
  EXPECT_EQ(isr(0x20), 0x02);
  EXPECT_FALSE(pic_.intr());
  pic_.write_port(0x20, 0x61);  // specific EOI for IRQ 1
  EXPECT_TRUE(pic_.intr());
  EXPECT_EQ(pic_.acknowledge(), 0x33);
}

TEST_F(PicTest, CascadeThroughTheSlave) {
  pulse(12);
  EXPECT_TRUE(pic_.intr());
  EXPECT_EQ(pic_.acknowledge(), 0x3c);
  EXPECT_EQ(isr(0x20), 0x04);
  EXPECT_EQ(isr(0xa0), 0x10);
  pulse(9);                   // lower slave number = higher priority than 12: nests on the slave...
  EXPECT_FALSE(pic_.intr());  // ...but the master's IR2 is in service (not special fully nested)
  pic_.write_port(0xa0, 0x20);
  pic_.write_port(0x20, 0x20);
  EXPECT_TRUE(pic_.intr());
  EXPECT_EQ(pic_.acknowledge(), 0x39);
}

TEST_F(PicTest, SpecialFullyNestedLetsTheSlaveNest) {
  init_like_linux(0x11);
  pulse(12);
  EXPECT_EQ(pic_.acknowledge(), 0x3c);
  pulse(9);
  EXPECT_TRUE(pic_.intr());
  EXPECT_EQ(pic_.acknowledge(), 0x39);
}

TEST_F(PicTest, SpuriousInterrupts) {
  // A level request that goes away before INTA: spurious IRQ 7, no ISR bit.
  pic_.write_port(0x4d0, 0x20);
  pic_.set_irq(5, true);
  EXPECT_TRUE(pic_.intr());
  pic_.set_irq(5, false);
  EXPECT_FALSE(pic_.intr());
  EXPECT_EQ(pic_.acknowledge(), 0x37);
  EXPECT_EQ(isr(0x20), 0x00);
  // A slave request masked after INT was raised (a driver racing with the
  // CPU): the INTA finds nothing and gets the spurious vector.
  pic_.write_port(0x4d1, 0x08);  // IRQ 11 level
  pic_.set_irq(11, true);
  EXPECT_TRUE(pic_.intr());
  pic_.write_port(0xa1, 0x08);
  EXPECT_FALSE(pic_.intr());
  EXPECT_EQ(pic_.acknowledge(), 0x37);  // nothing pending at all now
  pic_.write_port(0xa1, 0x00);
  EXPECT_TRUE(pic_.intr());
}

TEST_F(PicTest, LevelTriggeredRequestsAgainAfterEoi) {
  pic_.write_port(0x4d1, 0x08);  // IRQ 11 level-triggered
  EXPECT_EQ(pic_.read_port(0x4d1), 0x08);
  pic_.set_irq(11, true);
  EXPECT_EQ(pic_.acknowledge(), 0x3b);
  pic_.write_port(0xa0, 0x20);
  pic_.write_port(0x20, 0x20);
  EXPECT_TRUE(pic_.intr());  // still asserted
  EXPECT_EQ(pic_.acknowledge(), 0x3b);
  pic_.set_irq(11, false);
  pic_.write_port(0xa0, 0x20);
  pic_.write_port(0x20, 0x20);
  EXPECT_FALSE(pic_.intr());
}

TEST_F(PicTest, ElcrHasFixedEdgeInputs) {
  pic_.write_port(0x4d0, 0xff);
  pic_.write_port(0x4d1, 0xff);
  EXPECT_EQ(pic_.read_port(0x4d0), 0xf8);
  EXPECT_EQ(pic_.read_port(0x4d1), 0xde);
}

TEST_F(PicTest, AutoEoiLeavesNothingInService) {
  init_like_linux(0x03);
  pulse(4);
  EXPECT_EQ(pic_.acknowledge(), 0x34);
  EXPECT_EQ(isr(0x20), 0x00);
  pulse(6);
  EXPECT_TRUE(pic_.intr());
}

TEST_F(PicTest, EdgeHeldHighDoesNotRetrigger) {
  pic_.set_irq(4, true);
  EXPECT_EQ(pic_.acknowledge(), 0x34);
  pic_.write_port(0x20, 0x20);
  pic_.set_irq(4, true);
  EXPECT_FALSE(pic_.intr());
}

TEST_F(PicTest, RotationAndPoll) {
  pic_.write_port(0x20, 0xc4);  // set priority: IRQ 4 lowest, so IRQ 5 highest
  pulse(3);
  pulse(6);
  EXPECT_EQ(pic_.acknowledge(), 0x36);
  pic_.write_port(0x20, 0x20);
  // Poll: read gives 0x80 | irq and acknowledges it.
  pic_.write_port(0x20, 0x0c);
  EXPECT_EQ(pic_.read_port(0x20), 0x83);
  EXPECT_EQ(isr(0x20), 0x08);
  pic_.write_port(0x20, 0x0c);
  EXPECT_EQ(pic_.read_port(0x20), 0x00);
}

TEST_F(PicTest, SpecialMaskModeLetsLowerPrioritiesThrough) {
  pulse(1);
  EXPECT_EQ(pic_.acknowledge(), 0x31);
  pulse(5);
  EXPECT_FALSE(pic_.intr());    // blocked by IRQ 1 in service
  pic_.write_port(0x21, 0x02);  // mask IRQ 1...
  pic_.write_port(0x20, 0x68);  // ...and enter special mask mode (OCW3 ESMM|SMM)
  EXPECT_TRUE(pic_.intr());
  EXPECT_EQ(pic_.acknowledge(), 0x35);
  pic_.write_port(0x20, 0x48);  // leave special mask mode
  pic_.write_port(0x20, 0x65);  // specific EOI 5
  pic_.write_port(0x20, 0x61);  // specific EOI 1
  EXPECT_EQ(isr(0x20), 0x00);
}

TEST_F(PicTest, RotateOnAutoEoi) {
  init_like_linux(0x03);
  pic_.write_port(0x20, 0x80);  // rotate in auto-EOI mode
  pulse(1);
  pulse(3);
  EXPECT_EQ(pic_.acknowledge(), 0x31);  // IRQ 1 becomes the lowest priority
  pulse(1);
  EXPECT_EQ(pic_.acknowledge(), 0x33);
  EXPECT_EQ(pic_.acknowledge(), 0x31);
}

TEST_F(PicTest, CascadeLineAndBadInputsAreIgnored) {
  pic_.set_irq(2, true);
  pic_.set_irq(16, true);
  pic_.set_irq(1000, true);
  EXPECT_FALSE(pic_.intr());
  EXPECT_EQ(pic_.read_port(0x22), 0xff);
  pic_.write_port(0x22, 0x11);
}

TEST_F(PicTest, SaveRestore) {
  pulse(1);
  pulse(12);
  EXPECT_EQ(pic_.acknowledge(), 0x31);
  const Pic::State s = pic_.save();
  Pic other;
  other.restore(s);
  EXPECT_EQ(other.read_port(0x21), 0x00);
  other.write_port(0x20, 0x20);
  EXPECT_EQ(other.acknowledge(), 0x3c);
}

}  // namespace
}  // namespace hostvisor::emu
