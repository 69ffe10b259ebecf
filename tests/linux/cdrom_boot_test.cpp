// CD-ROMs and boot order under firmware (--firmware bios|uefi): a GRUB ISO
// on --cdrom (virtio-scsi) boots to the default guest's shell under SeaBIOS
// and under OVMF, put by bootindex= ahead of a bootable disk the firmware
// would otherwise boot first, and the guest reads the CD through its own
// drivers (virtio_scsi, sr_mod, isofs); the ISO on an AHCI controller's
// ATAPI drive (bus=ahci) boots under SeaBIOS, and Debian's generic kernel
// reads it through ahci, libata and sr_mod; a GRUB-installed qcow2 disk
// boots, and again after a reboot. The guests are the default guest's
// kernel (the cloud kernel) with the CD modules added to its initramfs, and
// the generic kernel with AHCI's, each built once into a cache directory of
// its own.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "guest/default_guest/default_guest.h"
#include "tests/linux/boot_media.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kBootTimeout{240};  // power-on to the shell prompt, software CPU
const std::regex kBanner(R"(hostvisor default guest: Linux (\S+), (\d+) CPU\(s\)\. Type 'poweroff' to stop\.)");
const std::string kCdText = "read from the CD through sr_mod and isofs";

// The default guest with the drivers a CD on virtio-scsi needs.
Result<guest::DefaultGuest> cdrom_guest() {
  guest::DefaultGuestOptions options;
  options.cache_dir = HV_TRY(guest::default_cache_dir()) + "/cdrom-guest";
  for (const char* module : {"virtio_scsi", "sr_mod", "isofs"}) options.modules.push_back(module);
  return guest::prepare_default_guest(options);
}

// Debian's generic kernel (the cloud kernel has no AHCI or libata) with
// what reads a CD on an AHCI port: ahci, sr_mod and isofs, and what they
// need (libahci, libata, scsi_mod, cdrom, ...: the builder follows each
// module's dependencies). No guest agent, no mke2fs: only the shell.
Result<guest::DefaultGuest> ahci_guest() {
  guest::DefaultGuestOptions options;
  options.cache_dir = HV_TRY(guest::default_cache_dir()) + "/ahci-guest";
  options.kernel_package = "linux-image-amd64";
  options.modules = {"ahci", "sr_mod", "isofs"};
  options.mkfs_packages.clear();
  options.agent_path.clear();
  return guest::prepare_default_guest(options);
}

std::vector<std::string> hostvisor_args(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {HOSTVISOR_PATH, "run", "--accel", "emu", "--memory", "512M", "--net", "none"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

void power_off(GuestConsole& console) {
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(seconds(90));
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, 0) << console.err();
}

// SeaBIOS boots from the CD rather than the disk, GRUB shows the ISO's
// `menu_title`, and the guest reaches its shell; prints the time taken.
void expect_seabios_boots_the_cd_to_the_shell(GuestConsole& console, const std::string& menu_title) {
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(console.wait_for_text("SeaBIOS (version", seconds(60))) << console.failure();
  auto booting = console.wait_for_regex(std::regex("Booting from (DVD/CD|Hard Disk)"), seconds(60));
  ASSERT_TRUE(booting) << console.failure();
  EXPECT_EQ((*booting)[1], "DVD/CD");
  ASSERT_TRUE(console.wait_for_text(menu_title, seconds(90))) << console.failure();
  ASSERT_TRUE(console.wait_for_regex(kBanner, kBootTimeout)) << console.failure();
  std::printf("power-on to the shell from \"%s\": %.1f s\n", menu_title.c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}
class CdromBoot : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir.path.empty());
    auto built = cdrom_guest();
    ASSERT_TRUE(built) << built.error().message();
    guest = *built;
    std::string error;
    disk = make_installed_disk(dir.path, "installed", {guest, "hostvisor installed disk", "from=disk", {}}, &error);
    ASSERT_FALSE(disk.empty()) << error;
  }
  std::string firmware_log() {
    std::ifstream in(dir.path / "seabios.log");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  ScratchDir dir{"cdrom-boot"};
  guest::DefaultGuest guest;
  std::string disk;
};

// --cdrom without --kernel implies --firmware bios: SeaBIOS's virtio-scsi
// driver finds the drive (INQUIRY, READ CAPACITY, READ(10)) and boots its
// El Torito image. A bootable disk is there too, which SeaBIOS tries first
// on its own (hard disks before CDs here); bootindex= puts the CD first.
TEST_F(CdromBoot, GrubIsoOnVirtioScsiBootsAheadOfABootableDiskByBootindexAndTheGuestMountsIt) {
  std::string error;
  const std::string iso =
      make_grub_iso(dir.path, "grub", {guest, "hostvisor CD", "from=cd", {{"hello.txt", kCdText + "\n"}}}, &error);
  ASSERT_FALSE(iso.empty()) << error;
  GuestConsole console;
  ASSERT_TRUE(console.start(
      hostvisor_args({"--disk", disk + ",bootindex=1", "--cdrom", iso + ",bootindex=0", "--firmware-log",
                      (dir.path / "seabios.log").string(), "--snapshot-dir", (dir.path / "snap").string()})))
      << console.failure();
  ASSERT_NO_FATAL_FAILURE(expect_seabios_boots_the_cd_to_the_shell(console, "hostvisor CD"));

  EXPECT_NE(guest_ok(console, "cat /proc/cmdline").find("from=cd"), std::string::npos);
  // Linux sees a CD drive with the ISO's size, and reads a file from it.
  EXPECT_EQ(guest_ok(console, "cat /sys/block/sr0/device/type"), "5\n");
  EXPECT_EQ(guest_ok(console, "cat /sys/block/sr0/device/vendor"), "HOSTVISR\n");
  const uint64_t iso_sectors = fs::file_size(iso) / 512;
  EXPECT_EQ(guest_ok(console, "cat /sys/block/sr0/size"), std::to_string(iso_sectors) + "\n");
  EXPECT_EQ(guest_ok(console, "cat /sys/block/sr0/ro"), "1\n");
  guest_ok(console, "mkdir -p /mnt/cd && mount -t iso9660 -o ro /dev/sr0 /mnt/cd");
  EXPECT_EQ(guest_ok(console, "cat /mnt/cd/hello.txt"), kCdText + "\n");
  // Megabytes read back whole: the kernel on the CD is the host's, byte for byte.
  std::string host_sum;
  ASSERT_EQ(host_command("md5sum < '" + guest.kernel_path + "'", &host_sum), 0);
  EXPECT_EQ(guest_ok(console, "md5sum < /mnt/cd/boot/vmlinuz").substr(0, 32), host_sum.substr(0, 32));
  // A write to the CD is refused.
  auto write = console.run("dd if=/dev/zero of=/dev/sr0 bs=2048 count=1", seconds(60));
  ASSERT_TRUE(write) << console.failure();
  EXPECT_NE(write->status, 0) << write->output;
  // A snapshot is refused with the reason, and the guest goes on. Asked
  // at the prompt, so hostvisor's line does not land inside it (busybox
  // then waits for its cursor report), and a fresh prompt after that line.
  ASSERT_TRUE(console.wait_for_text("/ # ", seconds(60))) << console.failure();
  ASSERT_TRUE(console.send_keys("\x01s")) << console.failure();
  EXPECT_TRUE(console.wait_for_text("snapshots of a machine with a --cdrom drive are not supported", seconds(30)))
      << console.failure();
  ASSERT_TRUE(console.send_line("")) << console.failure();
  EXPECT_FALSE(fs::exists(dir.path / "snap"));
  EXPECT_EQ(guest_ok(console, "cat /mnt/cd/hello.txt"), kCdText + "\n");
  power_off(console);
  EXPECT_NE(firmware_log().find("virtio-scsi vendor='HOSTVISR' product='CD-ROM'"), std::string::npos)
      << firmware_log().substr(0, 3000);
}

// Under OVMF: its virtio-scsi driver finds the drives and boots a CD's EFI
// image. Two CDs: OVMF on its own boots the one on the lower PCI slot; the
// other boots because bootindex= reaches OVMF: its QemuBootOrderLib
// translates the OpenFirmware path /pci@i0cf8/scsi@S/channel@0/disk@0,0
// into PciRoot(0x0)/Pci(S,0x0)/Scsi(0x0,0x0) and puts that option first.
TEST_F(CdromBoot, GrubIsoOnVirtioScsiBootsUnderUefiAheadOfAnotherCdByBootindex) {
  std::string error;
  const std::string iso =
      make_grub_iso(dir.path, "grub", {guest, "hostvisor CD", "from=cd", {{"hello.txt", kCdText + "\n"}}}, &error);
  ASSERT_FALSE(iso.empty()) << error;
  const std::string other = make_grub_iso(
      dir.path, "other", {guest, "hostvisor other CD", "from=other", {{"hello.txt", kCdText + "\n"}}}, &error);
  ASSERT_FALSE(other.empty()) << error;
  GuestConsole console;
  ASSERT_TRUE(console.start(
      hostvisor_args({"--firmware", "uefi", "--cdrom", other + ",bootindex=1", "--cdrom", iso + ",bootindex=0"})))
      << console.failure();
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(console.wait_for_text("BdsDxe: starting Boot", seconds(120))) << console.failure();
  ASSERT_TRUE(console.wait_for_regex(std::regex("hostvisor (CD|other CD)"), seconds(90))) << console.failure();
  ASSERT_TRUE(console.wait_for_regex(kBanner, kBootTimeout)) << console.failure();
  std::printf("power-on to the shell from the CD under OVMF: %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  EXPECT_NE(guest_ok(console, "cat /proc/cmdline").find("from=cd"), std::string::npos);
  EXPECT_EQ(guest_ok(console, "test -d /sys/firmware/efi && echo uefi"), "uefi\n");
  guest_ok(console, "mkdir -p /mnt/cd && mount -t iso9660 -o ro /dev/sr0 /mnt/cd");
  EXPECT_EQ(guest_ok(console, "cat /mnt/cd/hello.txt"), kCdText + "\n");
  power_off(console);
}

// bus=ahci under SeaBIOS: its AHCI driver finds the ATAPI drive (IDENTIFY
// PACKET DEVICE, then the CD through PACKET commands), and bootindex=
// reaches it through the path /pci@i0cf8/pci8086,2922@S/drive@0/disk@0,
// ahead of the bootable disk SeaBIOS would try first. GRUB reads the
// kernel and initramfs through the BIOS disk services, i.e. through AHCI,
// and the default guest comes up (its cloud kernel has no AHCI driver: the
// next test reads the CD from Linux).
TEST_F(CdromBoot, GrubIsoOnAhciBootsUnderSeabiosAheadOfABootableDiskByBootindex) {
  std::string error;
  const std::string iso = make_grub_iso(dir.path, "grub", {guest, "hostvisor AHCI CD", "from=ahci", {}}, &error);
  ASSERT_FALSE(iso.empty()) << error;
  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--disk", disk + ",bootindex=1", "--cdrom", iso + ",bus=ahci,bootindex=0",
                                            "--firmware-log", (dir.path / "seabios.log").string()})))
      << console.failure();
  ASSERT_NO_FATAL_FAILURE(expect_seabios_boots_the_cd_to_the_shell(console, "hostvisor AHCI CD"));
  EXPECT_NE(guest_ok(console, "cat /proc/cmdline").find("from=ahci"), std::string::npos);
  // The guest sees the controller: ICH9's SATA function in AHCI mode.
  EXPECT_NE(guest_ok(console, "cat /sys/bus/pci/devices/*/uevent").find("PCI_ID=8086:2922"), std::string::npos);
  power_off(console);
  const std::string log = firmware_log();
  EXPECT_NE(log.find("AHCI/0: registering: \"DVD/CD [AHCI/0: HOSTVISR CD-ROM ATAPI-8 DVD/CD]\""), std::string::npos)
      << log.substr(0, 4000);
}

// Debian's generic kernel, booted directly, reads the ISO on the AHCI
// port: libata identifies the ATAPI drive, sr_mod makes it /dev/sr0 and
// isofs mounts it; megabytes come back whole over the PRDTs, and the
// completions arrive as MSI.
TEST(CdromAhci, GenericKernelReadsTheCdThroughAhciLibataAndSrMod) {
  ScratchDir dir("cdrom-ahci");
  ASSERT_FALSE(dir.path.empty());
  auto built = ahci_guest();
  ASSERT_TRUE(built) << built.error().message();
  std::string error;
  const std::string iso =
      make_grub_iso(dir.path, "grub", {*built, "unused", "", {{"hello.txt", kCdText + "\n"}}}, &error);
  ASSERT_FALSE(iso.empty()) << error;
  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--kernel", built->kernel_path, "--initrd", built->initrd_path, "--append",
                                            built->cmdline, "--cdrom", iso + ",bus=ahci"})))
      << console.failure();
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(console.wait_for_regex(kBanner, kBootTimeout)) << console.failure();
  std::printf("the generic kernel to the shell: %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  EXPECT_EQ(guest_ok(console, "readlink /sys/bus/pci/devices/*/driver | grep -c /ahci$"), "1\n");
  EXPECT_EQ(guest_ok(console, "cat /sys/block/sr0/device/type"), "5\n");
  EXPECT_EQ(guest_ok(console, "cat /sys/block/sr0/device/vendor"), "HOSTVISR\n");
  EXPECT_EQ(guest_ok(console, "cat /sys/block/sr0/size"), std::to_string(fs::file_size(iso) / 512) + "\n");
  guest_ok(console, "mkdir -p /mnt/cd && mount -t iso9660 -o ro /dev/sr0 /mnt/cd");
  EXPECT_EQ(guest_ok(console, "cat /mnt/cd/hello.txt"), kCdText + "\n");
  std::string host_sum;
  ASSERT_EQ(host_command("md5sum < '" + built->kernel_path + "'", &host_sum), 0);
  EXPECT_EQ(guest_ok(console, "md5sum < /mnt/cd/boot/vmlinuz").substr(0, 32), host_sum.substr(0, 32));
  // The completions came as MSI (the ahci line in /proc/interrupts says so).
  EXPECT_NE(guest_ok(console, "grep ahci /proc/interrupts").find("MSI"), std::string::npos);
  power_off(console);
}

// An installed disk (MBR, GRUB in the gap, ext4 /boot, qcow2) boots to the
// shell, and a guest reboot runs the firmware and boots it again.
TEST_F(CdromBoot, InstalledQcow2DiskBootsAndAgainAfterAReboot) {
  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--firmware", "bios", "--disk", disk})));
  for (int boot = 0; boot < 2; ++boot) {
    SCOPED_TRACE(boot == 0 ? "first boot" : "after reboot");
    ASSERT_TRUE(console.wait_for_text("SeaBIOS (version", seconds(60))) << console.failure();
    ASSERT_TRUE(console.wait_for_text("Booting from Hard Disk", seconds(60))) << console.failure();
    ASSERT_TRUE(console.wait_for_text("hostvisor installed disk", seconds(90))) << console.failure();
    ASSERT_TRUE(console.wait_for_regex(kBanner, kBootTimeout)) << console.failure();
    EXPECT_NE(guest_ok(console, "cat /proc/cmdline").find("from=disk"), std::string::npos);
    if (boot == 0) {
      // GRUB read its files from the ext4 partition; the guest sees the same one.
      guest_ok(console, "grep -q ' vda1$' /proc/partitions");
      EXPECT_EQ(guest_ok(console, "dd if=/dev/vda1 bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' '"),
                "53ef\n");  // the ext2/3/4 superblock magic
      ASSERT_TRUE(console.send_line("reboot")) << console.failure();
    }
  }
  power_off(console);
  EXPECT_NE(console.err().find("rebooting"), std::string::npos) << console.err();
}

}  // namespace
}  // namespace hostvisor::testing
