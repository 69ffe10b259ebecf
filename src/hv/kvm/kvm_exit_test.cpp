// translate_exit() on hand-built kvm_run pages: no /dev/kvm needed.
#include "hv/kvm/kvm_exit.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace hostvisor::kvm {
namespace {

constexpr size_t kRunSize = 3 * 4096;

class KvmExitTest : public ::testing::Test {
 protected:
  KvmExitTest() : page_(kRunSize / 8) { std::memset(page_.data(), 0, kRunSize); }
  kvm_run& run() { return *reinterpret_cast<kvm_run*>(page_.data()); }
  uint8_t* base() { return reinterpret_cast<uint8_t*>(page_.data()); }

  std::vector<uint64_t> page_;
};

TEST_F(KvmExitTest, PortIoPointsIntoThePage) {
  run().exit_reason = KVM_EXIT_IO;
  run().io.direction = KVM_EXIT_IO_OUT;
  run().io.size = 2;
  run().io.port = 0x3f8;
  run().io.count = 3;
  run().io.data_offset = 4096;
  std::memcpy(base() + 4096, "abcdef", 6);
  VcpuExit exit = translate_exit(run(), kRunSize);
  auto* io = std::get_if<PortIoExit>(&exit);
  ASSERT_NE(io, nullptr);
  EXPECT_EQ(io->port, 0x3f8);
  EXPECT_EQ(io->size, 2);
  EXPECT_EQ(io->count, 3u);
  EXPECT_TRUE(io->is_write);
  EXPECT_EQ(io->data.data(), base() + 4096);
  EXPECT_EQ(io->data.size(), 6u);
}

TEST_F(KvmExitTest, PortIoOutsideThePageIsAFailure) {
  run().exit_reason = KVM_EXIT_IO;
  run().io.direction = KVM_EXIT_IO_IN;
  run().io.size = 4;
  run().io.count = 0x40000000;  // 4 GiB of data
  run().io.data_offset = 4096;
  EXPECT_TRUE(std::holds_alternative<FailureExit>(translate_exit(run(), kRunSize)));
  run().io.count = 1;
  run().io.data_offset = kRunSize - 2;  // straddles the end
  EXPECT_TRUE(std::holds_alternative<FailureExit>(translate_exit(run(), kRunSize)));
  run().io.data_offset = kRunSize - 4;  // exactly fits
  EXPECT_TRUE(std::holds_alternative<PortIoExit>(translate_exit(run(), kRunSize)));
  run().io.size = 3;
  EXPECT_TRUE(std::holds_alternative<FailureExit>(translate_exit(run(), kRunSize)));
}

TEST_F(KvmExitTest, MmioUsesTheInlineBuffer) {
  run().exit_reason = KVM_EXIT_MMIO;
  run().mmio.phys_addr = 0xfeb00010;
  run().mmio.len = 4;
  run().mmio.is_write = 0;
  VcpuExit exit = translate_exit(run(), kRunSize);
  auto* mmio = std::get_if<MmioExit>(&exit);
  ASSERT_NE(mmio, nullptr);
  EXPECT_EQ(mmio->address, 0xfeb00010u);
  EXPECT_FALSE(mmio->is_write);
  EXPECT_EQ(mmio->data.data(), run().mmio.data);
  EXPECT_EQ(mmio->data.size(), 4u);
  run().mmio.len = 9;
  EXPECT_TRUE(std::holds_alternative<FailureExit>(translate_exit(run(), kRunSize)));
}

TEST_F(KvmExitTest, SystemEvents) {
  run().exit_reason = KVM_EXIT_SHUTDOWN;
  EXPECT_EQ(std::get<SystemEventExit>(translate_exit(run(), kRunSize)).kind, SystemEventExit::Kind::kTripleFault);
  run().exit_reason = KVM_EXIT_SYSTEM_EVENT;
  run().system_event.type = KVM_SYSTEM_EVENT_SHUTDOWN;
  EXPECT_EQ(std::get<SystemEventExit>(translate_exit(run(), kRunSize)).kind, SystemEventExit::Kind::kPowerOff);
  run().system_event.type = KVM_SYSTEM_EVENT_RESET;
  EXPECT_EQ(std::get<SystemEventExit>(translate_exit(run(), kRunSize)).kind, SystemEventExit::Kind::kReset);
  run().system_event.type = 77;
  EXPECT_TRUE(std::holds_alternative<FailureExit>(translate_exit(run(), kRunSize)));
  run().exit_reason = KVM_EXIT_HLT;
  EXPECT_TRUE(std::holds_alternative<HaltExit>(translate_exit(run(), kRunSize)));
}

TEST_F(KvmExitTest, FailuresSayWhatHappened) {
  run().exit_reason = KVM_EXIT_FAIL_ENTRY;
  run().fail_entry.hardware_entry_failure_reason = 0x21;
  auto detail = std::get<FailureExit>(translate_exit(run(), kRunSize)).detail;
  EXPECT_NE(detail.find("0x21"), std::string::npos) << detail;

  run().exit_reason = KVM_EXIT_INTERNAL_ERROR;
  run().internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
  run().internal.ndata = 1000;  // more than the array holds: clamped
  run().internal.data[0] = 0xabc;
  detail = std::get<FailureExit>(translate_exit(run(), kRunSize)).detail;
  EXPECT_NE(detail.find("emulation"), std::string::npos) << detail;
  EXPECT_NE(detail.find("0xabc"), std::string::npos) << detail;

  run().exit_reason = 0x7777;
  detail = std::get<FailureExit>(translate_exit(run(), kRunSize)).detail;
  EXPECT_NE(detail.find(std::to_string(0x7777)), std::string::npos) << detail;
}

}  // namespace
}  // namespace hostvisor::kvm
