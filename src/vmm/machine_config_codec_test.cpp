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
  config.memory_backing = {.huge_pages = HugePages::kTransparent, .lock = true, .merge = true};
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
  config.balloon = BalloonConfig{.deflate_on_oom = true,
                                 .free_page_reporting = false,
                                 .stats_interval_seconds = 7,
                                 .transport = VirtioTransport::kMmio};
  config.vsock = VsockConfig{.guest_cid = 77, .uds_path = "/run/vm/vsock.sock", .transport = VirtioTransport::kMmio};
  config.qga_socket = "/run/vm/qga.sock";
  config.qga_own_path_if_busy = true;  // this run's choice: not saved
  return config;
}

// The bytes an older version wrote: version 6 appended each disk's serial
// (a 4-byte length and the text), so the empty ones of `config` are dropped.
std::vector<uint8_t> encode_as_version_5(MachineConfig config) {
  for (DiskConfig& disk : config.disks) disk.disk.serial.clear();
  std::vector<uint8_t> bytes = encode_machine_config(config, "emu");
  bytes.resize(bytes.size() - 4 * config.disks.size());
  bytes[0] = 5;
  return bytes;
}

// Version 5 appended the qga socket (a 4-byte length and the path), so the
// empty one of `config` is dropped too.
std::vector<uint8_t> encode_as_version_4(MachineConfig config) {
  config.qga_socket.clear();
  std::vector<uint8_t> bytes = encode_as_version_5(config);
  bytes.resize(bytes.size() - 4);
  bytes[0] = 4;
  return bytes;
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
  ASSERT_TRUE(saved->config.balloon);
  EXPECT_TRUE(saved->config.balloon->deflate_on_oom);
  EXPECT_FALSE(saved->config.balloon->free_page_reporting);
  EXPECT_EQ(saved->config.balloon->stats_interval_seconds, 7u);
  EXPECT_EQ(saved->config.balloon->transport, VirtioTransport::kMmio);
  EXPECT_EQ(saved->config.memory_backing, sample_config().memory_backing);
  ASSERT_TRUE(saved->config.vsock.has_value());
  EXPECT_EQ(saved->config.vsock->guest_cid, 77u);
  EXPECT_EQ(saved->config.vsock->uds_path, "/run/vm/vsock.sock");
  EXPECT_EQ(saved->config.vsock->transport, VirtioTransport::kMmio);
  EXPECT_EQ(saved->config.qga_socket, "/run/vm/qga.sock");
  EXPECT_FALSE(saved->config.qga_own_path_if_busy);

  MachineConfig without = sample_config();
  without.balloon.reset();
  without.vsock.reset();
  without.qga_socket.clear();
  auto plain = decode_machine_config(encode_machine_config(without, "emu"));
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  EXPECT_FALSE(plain->config.balloon);
  EXPECT_FALSE(plain->config.vsock.has_value());
  EXPECT_TRUE(plain->config.qga_socket.empty());
}

TEST(MachineConfigCodecTest, KeepsDiskSerialsAndReadsVersion5AsTheDefaultOnes) {
  MachineConfig config = sample_config();
  config.disks[0].disk.serial = "hostvisor-data";
  auto saved = decode_machine_config(encode_machine_config(config, "emu"));
  ASSERT_TRUE(saved.ok()) << saved.error().message();
  EXPECT_EQ(saved->config.disks[0].disk.serial, "hostvisor-data");
  auto old = decode_machine_config(encode_as_version_5(config));
  ASSERT_TRUE(old.ok()) << old.error().message();
  EXPECT_EQ(old->config.disks[0].disk.serial, "");
  EXPECT_EQ(old->config.qga_socket, "/run/vm/qga.sock");
  config.disks[0].disk.serial = "bad serial";
  EXPECT_FALSE(decode_machine_config(encode_machine_config(config, "emu")).ok());
}

TEST(MachineConfigCodecTest, ReadsVersion4AsNoQgaPort) {
  auto saved = decode_machine_config(encode_as_version_4(sample_config()));
  ASSERT_TRUE(saved.ok()) << saved.error().message();
  EXPECT_TRUE(saved->config.qga_socket.empty());
  ASSERT_TRUE(saved->config.vsock.has_value());
  EXPECT_EQ(saved->config.vsock->uds_path, "/run/vm/vsock.sock");
}

TEST(MachineConfigCodecTest, ReadsVersion3AsNoVsock) {
  // Version 3 ended before the vsock device (1 byte when there is none).
  MachineConfig config = sample_config();
  config.vsock.reset();
  std::vector<uint8_t> bytes = encode_as_version_4(config);
  bytes.resize(bytes.size() - 1);
  bytes[0] = 3;
  auto saved = decode_machine_config(bytes);
  ASSERT_TRUE(saved.ok()) << saved.error().message();
  EXPECT_FALSE(saved->config.vsock.has_value());
  ASSERT_TRUE(saved->config.balloon);
}

TEST(MachineConfigCodecTest, ReadsVersion2AsNoBalloon) {
  // Version 2 ended before the balloon (and the vsock device after it).
  MachineConfig config = sample_config();
  config.balloon.reset();
  config.vsock.reset();
  std::vector<uint8_t> bytes = encode_as_version_4(config);
  bytes.resize(bytes.size() - 2);
  bytes[0] = 2;
  auto saved = decode_machine_config(bytes);
  ASSERT_TRUE(saved.ok()) << saved.error().message();
  EXPECT_FALSE(saved->config.balloon);
  EXPECT_EQ(saved->config.memory_backing, sample_config().memory_backing);
}

TEST(MachineConfigCodecTest, ReadsVersion1AsDefaultMemoryBacking) {
  // Version 1 ended before the memory backing options (5 bytes) and the
  // balloon and the vsock device (1 byte each when there is none).
  MachineConfig config = sample_config();
  config.balloon.reset();
  config.vsock.reset();
  std::vector<uint8_t> bytes = encode_as_version_4(config);
  bytes.resize(bytes.size() - 7);
  bytes[0] = 1;
  auto saved = decode_machine_config(bytes);
  ASSERT_TRUE(saved.ok()) << saved.error().message();
  EXPECT_EQ(saved->config.memory_backing, MemoryBackingOptions{});
  EXPECT_EQ(saved->config.nets.size(), 1u);
}

TEST(MachineConfigCodecTest, RefusesMemoryOptionsThatCannotCombine) {
  MachineConfig config = sample_config();
  config.memory_backing = {.merge = true, .shared = true};
  auto saved = decode_machine_config(encode_machine_config(config, "emu"));
  ASSERT_FALSE(saved.ok());
  EXPECT_NE(saved.error().message().find("merge=on and shared=on"), std::string::npos);
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
