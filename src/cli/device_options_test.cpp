#include "cli/device_options.h"

#include <gtest/gtest.h>

namespace hostvisor::cli {
namespace {

TEST(DeviceOptions, DiskDefaultsToPciAndTakesTransportAnywhereAfterTheFile) {
  auto plain = parse_disk_config("root.qcow2,format=qcow2");
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  EXPECT_EQ(plain->transport, VirtioTransport::kPci);
  EXPECT_EQ(plain->disk.path, "root.qcow2");
  EXPECT_EQ(plain->disk.format, block::ImageFormat::kQcow2);

  auto mmio = parse_disk_config("data.img,transport=mmio,readonly=on");
  ASSERT_TRUE(mmio.ok()) << mmio.error().message();
  EXPECT_EQ(mmio->transport, VirtioTransport::kMmio);
  EXPECT_EQ(mmio->disk.path, "data.img");
  EXPECT_TRUE(mmio->disk.read_only);

  auto last = parse_disk_config("data.img,cache=none,transport=pci");
  ASSERT_TRUE(last.ok()) << last.error().message();
  EXPECT_EQ(last->transport, VirtioTransport::kPci);
  EXPECT_EQ(last->disk.cache, block::CacheMode::kNone);
}

TEST(DeviceOptions, DiskFileNamesKeepTheirEscapedCommas) {
  // ",," is a literal comma in the file name, even one that looks like a key.
  auto disk = parse_disk_config("a,,transport=mmio.img,transport=mmio");
  ASSERT_TRUE(disk.ok()) << disk.error().message();
  EXPECT_EQ(disk->disk.path, "a,transport=mmio.img");
  EXPECT_EQ(disk->transport, VirtioTransport::kMmio);

  auto only_file = parse_disk_config("a,,b.img");
  ASSERT_TRUE(only_file.ok()) << only_file.error().message();
  EXPECT_EQ(only_file->disk.path, "a,b.img");
  EXPECT_EQ(only_file->transport, VirtioTransport::kPci);
}

TEST(DeviceOptions, BadOrRepeatedTransportsAreRejectedWithTheChoices) {
  auto bad = parse_disk_config("d.img,transport=isa");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().message().find("expected pci"), std::string::npos) << bad.error().message();
  EXPECT_NE(bad.error().message().find("mmio"), std::string::npos) << bad.error().message();

  auto twice = parse_disk_config("d.img,transport=mmio,transport=pci");
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.error().message().find("twice"), std::string::npos) << twice.error().message();

  EXPECT_FALSE(parse_disk_config("d.img,transport=").ok());
  EXPECT_FALSE(parse_disk_config("d.img,transport=MMIO").ok());
  // The other keys still go to the disk parser, which checks them.
  EXPECT_FALSE(parse_disk_config("d.img,transport=mmio,colour=red").ok());
  EXPECT_FALSE(parse_disk_config(",transport=mmio").ok()) << "no file name";
}

TEST(DeviceOptions, NetTakesTransportToo) {
  auto net = parse_net_config("tap,ifname=hvtap0,transport=mmio,mac=52:54:00:12:34:56");
  ASSERT_TRUE(net.ok()) << net.error().message();
  EXPECT_EQ(net->transport, VirtioTransport::kMmio);
  EXPECT_EQ(std::get<net::TapNetOption>(net->net).ifname, "hvtap0");
  ASSERT_TRUE(std::get<net::TapNetOption>(net->net).mac.has_value());

  auto pci = parse_net_config("tap,ifname=hvtap0");
  ASSERT_TRUE(pci.ok()) << pci.error().message();
  EXPECT_EQ(pci->transport, VirtioTransport::kPci);

  EXPECT_FALSE(parse_net_config("tap,transport=mmio").ok()) << "ifname is still required";
  auto bad = parse_net_config("tap,ifname=x,transport=virtio");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message().rfind("--net tap,ifname=x,transport=virtio: transport=virtio: expected pci", 0), 0u)
      << bad.error().message();
  // The backend comes first; "transport=mmio" is not a backend.
  EXPECT_FALSE(parse_net_config("transport=mmio,tap,ifname=x").ok());
}

TEST(DeviceOptions, ConsoleIsSerialOrVirtio) {
  EXPECT_EQ(parse_console_device("serial").value(), ConsoleDevice::kSerial);
  EXPECT_EQ(parse_console_device("virtio").value(), ConsoleDevice::kVirtio);
  auto bad = parse_console_device("hvc0");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("serial"), std::string::npos);
  EXPECT_NE(bad.error().message().find("virtio"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor::cli
