#include "vmm/machine_config_codec.h"

#include <gtest/gtest.h>

namespace hostvisor {
namespace {

MachineConfig sample_config() {
  MachineConfig config;
  config.kernel_path = "/boot/vmlinuz";
  config.cmdline = "console=ttyS0";
  config.memory_bytes = 512ull << 20;
  config.cpus = 2;
  config.console = ConsoleDevice::kVirtio;
  DiskConfig disk;
  disk.disk.path = "/images/root.qcow2";
  disk.disk.format = block::ImageFormat::kQcow2;
  disk.disk.discard = true;
  disk.transport = VirtioTransport::kMmio;
  config.disks.push_back(disk);
  NetConfig nic;
  nic.text = "user,hostfwd=tcp::2222-:22";
  nic.net = *net::parse_net_option(nic.text);
  config.nets.push_back(nic);
  config.vsock = VsockConfig{.guest_cid = 77, .uds_path = "/run/vm/vsock.sock", .transport = VirtioTransport::kMmio};
  return config;
}

TEST(MachineConfigCodecTest, RoundTrips) {
  auto saved = decode_machine_config(encode_machine_config(sample_config(), "emu"));
  ASSERT_TRUE(saved.ok()) << saved.error().message();
  EXPECT_EQ(saved->backend, "emu");
  EXPECT_EQ(saved->config.accel, Accel::kEmu);
  EXPECT_EQ(saved->config.memory_bytes, 512ull << 20);
  EXPECT_EQ(saved->config.cpus, 2u);
  EXPECT_EQ(saved->config.console, ConsoleDevice::kVirtio);
  ASSERT_EQ(saved->config.disks.size(), 1u);
  EXPECT_EQ(saved->config.disks[0].disk.path, "/images/root.qcow2");
  EXPECT_EQ(saved->config.disks[0].disk.format, block::ImageFormat::kQcow2);
  EXPECT_TRUE(saved->config.disks[0].disk.discard);
  EXPECT_EQ(saved->config.disks[0].transport, VirtioTransport::kMmio);
  ASSERT_EQ(saved->config.nets.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<net::UserNetOption>(saved->config.nets[0].net));
  ASSERT_TRUE(saved->config.vsock.has_value());
  EXPECT_EQ(saved->config.vsock->guest_cid, 77u);
  EXPECT_EQ(saved->config.vsock->uds_path, "/run/vm/vsock.sock");
  EXPECT_EQ(saved->config.vsock->transport, VirtioTransport::kMmio);
  MachineConfig without = sample_config();
  without.vsock.reset();
  auto plain = decode_machine_config(encode_machine_config(without, "kvm"));
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  EXPECT_FALSE(plain->config.vsock.has_value());
}

TEST(MachineConfigCodecTest, RefusesDamagedBytes) {
  const std::vector<uint8_t> bytes = encode_machine_config(sample_config(), "kvm");
  for (size_t length = 0; length < bytes.size(); ++length)
    EXPECT_FALSE(decode_machine_config(std::span(bytes).first(length)).ok()) << length;
  std::vector<uint8_t> unknown = encode_machine_config(sample_config(), "xen");
  EXPECT_FALSE(decode_machine_config(unknown).ok());
}

}  // namespace
}  // namespace hostvisor
