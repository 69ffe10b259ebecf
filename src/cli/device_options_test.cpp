#include "cli/device_options.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <type_traits>
#include <variant>

#include "net/mac_address.h"
#include "net/net_option.h"

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

TEST(DeviceOptions, DiskBootindexIsANumberOnPciOnly) {
  auto disk = parse_disk_config("root.qcow2,bootindex=2,readonly=on");
  ASSERT_TRUE(disk.ok()) << disk.error().message();
  EXPECT_EQ(disk->bootindex, 2u);
  EXPECT_TRUE(disk->disk.read_only);
  EXPECT_FALSE(parse_disk_config("root.qcow2")->bootindex.has_value());
  for (const char* bad : {"root.qcow2,bootindex=", "root.qcow2,bootindex=x", "root.qcow2,bootindex=-1",
                          "root.qcow2,bootindex=10000", "root.qcow2,bootindex=1,bootindex=2"})
    EXPECT_FALSE(parse_disk_config(bad).ok()) << bad;
  auto mmio = parse_disk_config("root.qcow2,transport=mmio,bootindex=0");
  ASSERT_FALSE(mmio.ok());
  EXPECT_NE(mmio.error().message().find("transport=pci"), std::string::npos);
}

TEST(DeviceOptions, CdromTakesABusAndABootindex) {
  const std::string dir = ::testing::TempDir() + "hv-cdrom-option,x";
  std::filesystem::create_directories(dir);
  const std::string iso = dir + "/a.iso";
  std::ofstream(iso) << "iso";
  std::string escaped = iso;
  escaped.replace(escaped.find(','), 1, ",,");
  auto plain = parse_cdrom_config(escaped);
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  EXPECT_EQ(plain->path, iso);
  EXPECT_EQ(plain->bus, CdromBus::kScsi);
  EXPECT_FALSE(plain->bootindex.has_value());
  auto full = parse_cdrom_config(escaped + ",bus=scsi,bootindex=3");
  ASSERT_TRUE(full.ok()) << full.error().message();
  EXPECT_EQ(full->bus, CdromBus::kScsi);
  EXPECT_EQ(full->bootindex, 3u);
  auto ahci = parse_cdrom_config(escaped + ",bus=ahci,bootindex=0");
  ASSERT_TRUE(ahci.ok()) << ahci.error().message();
  EXPECT_EQ(ahci->bus, CdromBus::kAhci);
  EXPECT_EQ(ahci->bootindex, 0u);
  EXPECT_NE(parse_cdrom_config(escaped + ",bus=ahci,bus=scsi").error().message().find("twice"), std::string::npos);
  EXPECT_NE(parse_cdrom_config(escaped + ",bus=ide").error().message().find("expected scsi"), std::string::npos);
  EXPECT_NE(parse_cdrom_config(escaped + ",readonly=on").error().message().find("bus=scsi|ahci or bootindex=N"),
            std::string::npos);
  EXPECT_NE(parse_cdrom_config(escaped.substr(0, escaped.rfind('/')) + "/missing.iso")
                .error()
                .message()
                .find("no such image"),
            std::string::npos);
  EXPECT_FALSE(parse_cdrom_config("").ok());
  std::filesystem::remove_all(dir);
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

TEST(DeviceOptions, AnEmptyNetOptionIsUserModeNat) {
  // `--net` with nothing after it (or --net "") is the NAT.
  auto net = parse_net_config("");
  ASSERT_TRUE(net.ok()) << net.error().message();
  EXPECT_TRUE(std::holds_alternative<net::UserNetOption>(net->net));
}

std::vector<NetConfig> nets_of(const std::vector<std::string>& texts) {
  std::vector<NetConfig> nets;
  for (const auto& text : texts) nets.push_back(parse_net_config(text).value());
  return nets;
}

std::optional<net::MacAddress> mac_of(const NetConfig& config) {
  return std::visit(
      [](const auto& mode) -> std::optional<net::MacAddress> {
        if constexpr (std::is_same_v<std::decay_t<decltype(mode)>, net::NoNetOption>)
          return std::nullopt;
        else
          return mode.mac;
      },
      config.net);
}

TEST(DeviceOptions, StableMacsAreTheSameForTheSameVmAndDifferPerNic) {
  const std::vector<DiskConfig> disks = {parse_disk_config("/images/root.qcow2").value()};
  const std::string vm = run_vm_identity("/boot/vmlinuz", disks);

  auto first = nets_of({"user", "none", "tap,ifname=hvtap0"});
  assign_stable_macs(vm, first);
  auto second = nets_of({"user", "none", "tap,ifname=hvtap0"});
  assign_stable_macs(vm, second);
  ASSERT_TRUE(mac_of(first[0]) && mac_of(first[2]));
  EXPECT_FALSE(mac_of(first[1])) << "--net none is not a NIC";
  EXPECT_EQ(mac_of(first[0]), mac_of(second[0])) << "a restart of the same VM keeps the MAC";
  EXPECT_EQ(mac_of(first[2]), mac_of(second[2]));
  EXPECT_NE(mac_of(first[0]), mac_of(first[2])) << "two NICs of one VM need two MACs";
  for (const auto* config : {&first[0], &first[2]}) {
    const net::MacAddress mac = *mac_of(*config);
    EXPECT_EQ(mac[0] & 1, 0) << "unicast";
    EXPECT_EQ(mac[0] & 2, 2) << "locally administered";
  }

  // Another disk, another VM: other MACs.
  auto other = nets_of({"user"});
  assign_stable_macs(run_vm_identity("/boot/vmlinuz", {parse_disk_config("/images/other.qcow2").value()}), other);
  EXPECT_NE(mac_of(other[0]), mac_of(first[0]));
  auto no_disk = nets_of({"user"});
  assign_stable_macs(run_vm_identity("/boot/vmlinuz", {}), no_disk);
  EXPECT_NE(mac_of(no_disk[0]), mac_of(first[0]));

  // The index counts NICs, not --net options: "none" before a NIC does not
  // change its MAC.
  auto with_none_first = nets_of({"none", "user"});
  assign_stable_macs(vm, with_none_first);
  EXPECT_EQ(mac_of(with_none_first[1]), mac_of(first[0]));
}

TEST(DeviceOptions, AGivenMacIsKeptAndCountsAsANic) {
  const std::string vm = run_vm_identity("/boot/vmlinuz", {});
  auto nets = nets_of({"user,mac=52:54:00:12:34:56", "user"});
  assign_stable_macs(vm, nets);
  EXPECT_EQ(net::format_mac_address(*mac_of(nets[0])), "52:54:00:12:34:56");
  auto alone = nets_of({"user", "user"});
  assign_stable_macs(vm, alone);
  EXPECT_EQ(mac_of(nets[1]), mac_of(alone[1])) << "the second NIC keeps its MAC whether or not the first has mac=";
}

TEST(DeviceOptions, RunVmIdentityIsAbsoluteAndOrdered) {
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(run_vm_identity("bzImage", {}), run_vm_identity(cwd + "/bzImage", {}));
  EXPECT_EQ(run_vm_identity("./a/../bzImage", {}), run_vm_identity(cwd + "/bzImage", {}));
  const auto a = parse_disk_config("a.img").value();
  const auto b = parse_disk_config("b.img").value();
  EXPECT_NE(run_vm_identity("k", {a, b}), run_vm_identity("k", {b, a}));
  EXPECT_NE(run_vm_identity("k", {a}), run_vm_identity("k2", {a}));
}

}  // namespace
}  // namespace hostvisor::cli

namespace hostvisor::cli {
namespace {

std::vector<NetConfig> saved_nets(const std::vector<std::string>& texts) {
  std::vector<NetConfig> nets;
  for (const auto& text : texts) {
    auto net = parse_net_config(text);
    EXPECT_TRUE(net.ok()) << text;
    if (net) nets.push_back(*net);
  }
  return nets;
}

// A restore may give the snapshot's NATs new forwards and rates, nothing else.
TEST(RestoreNetOptions, ANatTakesNewForwardsAndARateAndKeepsItsMac) {
  auto nets = saved_nets({"user,mac=02:00:00:00:00:01", "user,net=10.0.3.0/24,rate=1M"});
  ASSERT_TRUE(apply_restore_net_options(nets, {"user,hostfwd=tcp::5555-:22", "user,net=10.0.3.0/24"}).ok());
  const auto& first = std::get<net::UserNetOption>(nets[0].net);
  ASSERT_EQ(first.forwards.size(), 1u);
  EXPECT_EQ(first.forwards[0].host_port, 5555);
  EXPECT_EQ(first.mac, (net::MacAddress{0x02, 0, 0, 0, 0, 0x01}));
  EXPECT_EQ(nets[0].text, "user,hostfwd=tcp::5555-:22");
  EXPECT_FALSE(std::get<net::UserNetOption>(nets[1].net).rate)
      << "the rate given at the restore replaces the saved one";
}

TEST(RestoreNetOptions, WhatTheGuestWouldSeeIsRefusedAndNothingChanges) {
  const auto before = saved_nets({"user"});
  struct Case {
    std::vector<std::string> given;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"user", "user"}, "the snapshot has 1 NIC(s); give one --net for each"},
           {{"user,net=10.0.9.0/24"}, "in more than hostfwd= and rate="},
           {{"user,restrict=on"}, "in more than hostfwd= and rate="},
           {{"user,ipv6=off"}, "in more than hostfwd= and rate="},
           {{"user,transport=mmio"}, "in more than hostfwd= and rate="},
           {{"user,mac=02:00:00:00:00:09"}, "in more than hostfwd= and rate="},
           {{"tap,ifname=tap0"}, "only a user-mode NAT's hostfwd= and rate= can change"},
           {{"user,hostfwd=bogus"}, "hostfwd"},
       }) {
    auto nets = before;
    const auto result = apply_restore_net_options(nets, c.given);
    ASSERT_FALSE(result.ok()) << c.given[0];
    EXPECT_NE(result.error().message().find(c.message), std::string::npos) << result.error().message();
    EXPECT_EQ(nets[0].text, before[0].text) << "a refused --net changed the configuration";
  }
}

TEST(DeviceOptions, VsockTakesCidUdsAndTransport) {
  auto vsock = parse_vsock_config("cid=3,uds=/tmp/vm.sock");
  ASSERT_TRUE(vsock.ok()) << vsock.error().message();
  EXPECT_EQ(vsock->guest_cid, 3u);
  EXPECT_EQ(vsock->uds_path, "/tmp/vm.sock");
  EXPECT_EQ(vsock->transport, VirtioTransport::kPci);
  vsock = parse_vsock_config("uds=v.sock,transport=mmio,cid=4294967294");
  ASSERT_TRUE(vsock.ok()) << vsock.error().message();
  EXPECT_EQ(vsock->guest_cid, 4294967294u);
  EXPECT_EQ(vsock->transport, VirtioTransport::kMmio);
}

TEST(DeviceOptions, VsockRefusesReservedCidsAndMissingFields) {
  for (const char* bad :
       {"cid=2,uds=/s", "cid=0,uds=/s", "cid=4294967295,uds=/s", "cid=-5,uds=/s", "cid=3x,uds=/s", "cid=,uds=/s",
        "cid=3", "uds=/s", "cid=3,uds=", "cid=3,uds=/s,port=5", "cid=3,uds=/s,transport=isa", ""}) {
    auto vsock = parse_vsock_config(bad);
    ASSERT_FALSE(vsock.ok()) << bad;
    EXPECT_NE(vsock.error().message().find("vsock"), std::string::npos) << vsock.error().message();
  }
  EXPECT_NE(parse_vsock_config("cid=1,uds=/s").error().message().find("reserved"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor::cli

namespace hostvisor::cli {
namespace {

TEST(ShareOption, TakesTheDirectoryTagAndOptions) {
  char tmpl[] = "/tmp/hv-share-opt-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto plain = parse_share_config(dir + "/,tag=work");
  ASSERT_TRUE(plain.ok()) << plain.error().message();
  EXPECT_EQ(plain->host_dir, dir);
  EXPECT_EQ(plain->tag, "work");
  EXPECT_FALSE(plain->read_only);
  EXPECT_EQ(plain->cache, ShareCache::kAuto);
  EXPECT_EQ(plain->transport, VirtioTransport::kPci);
  auto full = parse_share_config(dir + ",readonly=on,cache=never,tag=a.b-c_1,transport=mmio");
  ASSERT_TRUE(full.ok()) << full.error().message();
  EXPECT_TRUE(full->read_only);
  EXPECT_EQ(full->cache, ShareCache::kNever);
  EXPECT_EQ(full->transport, VirtioTransport::kMmio);
  EXPECT_EQ(share_cmdline_parameter({*plain, *full}), "hostvisor.shares=work,a.b-c_1");
  EXPECT_EQ(share_cmdline_parameter({}), "");
  auto mounted = parse_share_config(dir + ",tag=proj,mount=/home/u/proj");
  ASSERT_TRUE(mounted.ok()) << mounted.error().message();
  EXPECT_EQ(mounted->guest_mount, "/home/u/proj");
  EXPECT_EQ(share_cmdline_parameter({*plain, *mounted}), "hostvisor.shares=work,proj:/home/u/proj");
  // A comma in the directory's name is doubled.
  const std::string comma = dir + "/a,b";
  ASSERT_EQ(::mkdir(comma.c_str(), 0755), 0);
  auto escaped = parse_share_config(dir + "/a,,b,tag=x");
  ASSERT_TRUE(escaped.ok()) << escaped.error().message();
  EXPECT_EQ(escaped->host_dir, comma);
  for (const std::string& bad : {dir, dir + ",tag=", dir + ",tag=has space", dir + ",tag=" + std::string(37, 'a'),
                                 dir + ",tag=x,readonly=yes", dir + ",tag=x,cache=sometimes", dir + ",tag=x,color=red",
                                 dir + "/missing,tag=x", std::string(",tag=x"), dir + ",tag=x,transport=isa",
                                 dir + ",tag=x,mount=relative", dir + ",tag=x,mount=/a:b", dir + ",tag=x,mount=/a b",
                                 dir + ",tag=x,mount=/"}) {
    auto parsed = parse_share_config(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.error().message().find("--share"), std::string::npos) << parsed.error().message();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace hostvisor::cli
