#include "daemon/vm_config.h"

#include <gtest/gtest.h>

#include "daemon/names.h"

namespace hostvisor::daemon {
namespace {

using nlohmann::json;

TEST(VmNames, AcceptsTheAlphabetAndRefusesPathsAndOddCharacters) {
  EXPECT_TRUE(check_name("dev", "VM name"));
  EXPECT_TRUE(check_name("web-1", "VM name"));
  EXPECT_TRUE(check_name(std::string(63, 'a'), "VM name"));
  for (const char* bad : {"", "..", ".", "-x", "a/b", "../etc", "Dev", "a b", "a_b", "a.b", "x\n"})
    EXPECT_FALSE(check_name(bad, "VM name")) << bad;
  EXPECT_FALSE(check_name(std::string(64, 'a'), "VM name"));
  const auto error = check_name("../x", "VM name");
  EXPECT_NE(error.error().message().find("lowercase"), std::string::npos);
}

TEST(VmConfig, DefaultsForTheDefaultGuestIncludeADataDisk) {
  auto config = vm_config_from_json(json{{"name", "dev"}});
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->memory, "512M");
  EXPECT_EQ(config->cpus, 1u);
  EXPECT_EQ(config->nets, std::vector<std::string>{"user"});
  EXPECT_EQ(config->data_disk_bytes, uint64_t{8} << 30);
  EXPECT_TRUE(config->default_guest());
}

TEST(VmConfig, RoundTripsThroughJson) {
  auto config = vm_config_from_json(json{{"name", "k"},
                                         {"memory", "1G"},
                                         {"cpus", 2},
                                         {"accel", "emu"},
                                         {"kernel", "/boot/vmlinuz"},
                                         {"append", "console=ttyS0"},
                                         {"disks", {{{"path", "disks/root.qcow2"}, {"format", "qcow2"}}}},
                                         {"nets", {"internal,name=lab"}}});
  ASSERT_TRUE(config) << config.error().message();
  auto again = vm_config_from_json(vm_config_to_json(*config));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(vm_config_to_json(*again), vm_config_to_json(*config));
  EXPECT_EQ(again->data_disk_bytes, 0u);  // not the default guest: no data disk unless asked
}

TEST(VmConfig, RefusesBadFieldsWithTheFieldNamed) {
  struct Case {
    json body;
    const char* field;
  };
  const Case cases[] = {
      {json{{"memory", "512M"}}, "name"},
      {json{{"name", "a/b"}}, "a/b"},
      {json{{"name", "x"}, {"cpus", 0}}, "cpus"},
      {json{{"name", "x"}, {"cpus", "2"}}, "cpus"},
      {json{{"name", "x"}, {"memory", "lots"}}, "memory"},
      {json{{"name", "x"}, {"accel", "tcg"}}, "accel"},
      {json{{"name", "x"}, {"disks", {{{"path", "../../etc/shadow"}}}}}, "disks"},
      {json{{"name", "x"}, {"disks", {{{"path", "a,b"}}}}}, "disks"},
      {json{{"name", "x"}, {"nets", "user"}}, "nets"},
      {json{{"name", "x"}, {"colour", "red"}}, "colour"},
      {json{{"name", "x"}, {"initrd", "/i"}}, "initrd"},
      {json{{"name", "x"}, {"disks", {{{"path", "/d"}, {"serial", "a b"}}}}}, "serial"},
      {json{{"name", "x"}, {"shares", "/tmp"}}, "shares"},
      {json{{"name", "x"}, {"shares", {{{"tag", "t"}}}}}, "shares"},
      {json{{"name", "x"}, {"shares", {{{"path", "tmp"}}}}}, "not an absolute path"},
      {json{{"name", "x"}, {"shares", {{{"path", "/no/such/dir"}}}}}, "existing directory"},
      {json{{"name", "x"}, {"shares", {{{"path", "/tmp"}, {"tag", "a b"}}}}}, "tag 'a b'"},
      {json{{"name", "x"}, {"shares", {{{"path", "/tmp"}, {"tag", std::string(37, 't')}}}}}, "36 characters"},
      {json{{"name", "x"}, {"shares", {{{"path", "/tmp"}, {"tag", "t"}}, {{"path", "/"}, {"tag", "t"}}}}}, "two shares"},
      {json{{"name", "x"}, {"shares", {{{"path", "/tmp"}, {"readonly", "yes"}}}}}, "readonly"},
      {json{{"name", "x"}, {"shares", {{{"path", "/tmp"}, {"mount", "/a:b"}}}}}, "mount=/a:b"},
      {json{{"name", "x"}, {"shares", {{{"path", "/tmp"}, {"mount", "rel"}}}}}, "absolute"},
  };
  for (const Case& c : cases) {
    auto config = vm_config_from_json(c.body);
    ASSERT_FALSE(config) << c.body.dump();
    EXPECT_EQ(config.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(config.error().message().find(c.field), std::string::npos) << config.error().message();
  }
}

TEST(VmConfig, BootArgumentsNameEveryDiskUnderTheVmDirectory) {
  auto config = vm_config_from_json(json{{"name", "dev"}, {"cpus", 2}, {"nets", {"user", "none"}}});
  ASSERT_TRUE(config);
  config->disks.push_back(VmDisk{.path = "disks/data.qcow2", .format = "qcow2", .serial = kDataDiskSerial});
  config->disks.push_back(VmDisk{.path = "/srv/iso.raw", .format = "raw", .readonly = true});
  const auto args = boot_arguments(*config, "/lib/vms/dev");
  const std::vector<std::string> expected{"--memory", "512M", "--cpus", "2", "--console", "serial",
                                          "--disk", "/lib/vms/dev/disks/data.qcow2,format=qcow2,serial=hostvisor-data",
                                          "--disk", "/srv/iso.raw,format=raw,readonly=on",
                                          "--net", "user", "--net", "none"};
  EXPECT_EQ(args, expected);
}

TEST(VmConfig, SharesRoundTripAndBecomeShareArguments) {
  auto config = vm_config_from_json(json{{"name", "dev"},
                                         {"data_disk_bytes", 0},
                                         {"nets", json::array()},
                                         {"shares",
                                          {{{"path", "/tmp"}},
                                           {{"path", "/"}, {"tag", "root"}, {"readonly", true}, {"mount", "/host"}}}}});
  ASSERT_TRUE(config) << config.error().message();
  ASSERT_EQ(config->shares.size(), 2u);
  EXPECT_EQ(config->shares[0].tag, "share0");  // a tag by default
  EXPECT_FALSE(config->shares[0].readonly);
  auto again = vm_config_from_json(vm_config_to_json(*config));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(vm_config_to_json(*again), vm_config_to_json(*config));
  const auto args = boot_arguments(*config, "/lib/vms/dev");
  const std::vector<std::string> expected{"--memory", "512M",  "--cpus",  "1",
                                          "--console", "serial", "--share", "/tmp,tag=share0",
                                          "--share",  "/,tag=root,readonly=on,mount=/host", "--net", "none"};
  EXPECT_EQ(args, expected);
}

TEST(VmConfig, PortForwardsJoinAndLeaveTheirNicsNetValue) {
  auto config = vm_config_from_json(json{{"name", "dev"}, {"nets", {"none", "user", "internal,name=lab"}}});
  ASSERT_TRUE(config);
  ASSERT_TRUE(add_net_forward(*config, 0, "tcp:127.0.0.1:2222-:22"));
  ASSERT_TRUE(add_net_forward(*config, 0, "udp:0.0.0.0:5353-10.0.2.15:53"));
  EXPECT_EQ(config->nets[1], "user,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:0.0.0.0:5353-10.0.2.15:53");
  EXPECT_FALSE(add_net_forward(*config, 2, "tcp:127.0.0.1:1-:1"));  // two NICs: 0 and 1
  EXPECT_FALSE(remove_net_forward(*config, 0, "udp", "127.0.0.1", 2222));  // another protocol
  EXPECT_TRUE(remove_net_forward(*config, 0, "tcp", "127.0.0.1", 2222));
  EXPECT_EQ(config->nets[1], "user,hostfwd=udp:0.0.0.0:5353-10.0.2.15:53");
  EXPECT_TRUE(remove_net_forward(*config, 0, "udp", "0.0.0.0", 5353));
  EXPECT_EQ(config->nets[1], "user");
  // A forward written with no host address is 127.0.0.1's.
  config->nets[2] = "hostfwd=tcp::8080-:80";
  EXPECT_TRUE(remove_net_forward(*config, 1, "tcp", "127.0.0.1", 8080));
  EXPECT_EQ(config->nets[2], "user");
}

TEST(VmConfig, UpdateChangesOnlyWhatItNamesAndRefusesARename) {
  auto config = vm_config_from_json(json{{"name", "dev"}});
  ASSERT_TRUE(config);
  ASSERT_TRUE(apply_vm_update(*config, json{{"cpus", 4}}));
  EXPECT_EQ(config->cpus, 4u);
  EXPECT_EQ(config->memory, "512M");
  EXPECT_FALSE(apply_vm_update(*config, json{{"name", "other"}}));
  // A refused update leaves the config as it was.
  EXPECT_FALSE(apply_vm_update(*config, json{{"cpus", 8}, {"accel", "nope"}}));
  EXPECT_EQ(config->cpus, 4u);
}

}  // namespace
}  // namespace hostvisor::daemon
