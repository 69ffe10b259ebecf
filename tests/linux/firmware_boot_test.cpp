// Booting through firmware (--firmware bios|uefi): Debian's SeaBIOS or
// OVMF runs on the software CPU, reads the machine from fw_cfg, and boots
// what is on a virtio-blk disk. The boot media are made here from Debian packages: a
// GRUB rescue ISO (grub-mkrescue, with grub-pc-bin, grub-efi-amd64-bin,
// xorriso and mtools) holding the default guest's kernel and initramfs. It
// is hybrid, so it boots as a plain disk. One boot is shared by the checks
// that need a running guest, the reboot included.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "guest/default_guest/default_guest.h"
#include "tests/integration/kvm_skip.h"
#include "tests/linux/boot_media.h"
#include "tests/linux/guest_console.h"
#include "tests/support/scratch_dir.h"

namespace hostvisor::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr seconds kBootTimeout{240};  // power-on to the shell prompt, software CPU
const std::regex kBanner(R"(hostvisor default guest: Linux (\S+), (\d+) CPU\(s\)\. Type 'poweroff' to stop\.)");

// A GRUB rescue ISO in `dir` whose one menu entry boots the default guest
// (its kernel command line, on the serial console). Returns the ISO's path,
// or "" with `error` set.
std::string default_guest_iso(const fs::path& dir, std::string* error) {
  auto guest = guest::prepare_default_guest({});
  if (!guest) {
    *error = "the default guest: " + guest.error().message();
    return "";
  }
  return make_grub_iso(dir, "grub", {.guest = *guest, .title = "hostvisor default guest"}, error);
}

std::vector<std::string> hostvisor_args(const std::vector<std::string>& extra, const std::string& firmware = "bios") {
  std::vector<std::string> argv = {HOSTVISOR_PATH, "run", "--accel", "emu", "--firmware", firmware};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// From power-on: SeaBIOS's banner on the serial console (sercon), GRUB's
// menu, then the default guest's shell. Returns the seconds it took.
double expect_firmware_boot_to_shell(GuestConsole& console) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(console.wait_for_text("SeaBIOS (version", seconds(60))) << console.failure();
  EXPECT_TRUE(console.wait_for_text("Booting from Hard Disk", seconds(60))) << console.failure();
  EXPECT_TRUE(console.wait_for_text("GNU GRUB", seconds(60))) << console.failure();
  EXPECT_TRUE(console.wait_for_text("hostvisor default guest", seconds(60))) << console.failure();
  auto banner = console.wait_for_regex(kBanner, kBootTimeout);
  EXPECT_TRUE(banner) << console.failure();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST(FirmwareBios, GrubIsoOnADiskBootsToTheShellAndARebootRunsTheFirmwareAgain) {
  ScratchDir dir("firmware-bios");
  ASSERT_FALSE(dir.path.empty());
  std::string error;
  const std::string iso = default_guest_iso(dir.path, &error);
  ASSERT_FALSE(iso.empty()) << error;
  const fs::path log = dir.path / "seabios.log";

  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--cpus", "2", "--memory", "512M", "--disk", iso + ",readonly=on", "--net",
                                            "none", "--firmware-log", log.string()})))
      << console.failure();
  const double first = expect_firmware_boot_to_shell(console);
  std::printf("power-on to the shell through SeaBIOS and GRUB: %.1f s\n", first);

  // GRUB handed the kernel its own command line, with the image's name first.
  EXPECT_NE(guest_ok(console, "cat /proc/cmdline").find("BOOT_IMAGE=/boot/vmlinuz "), std::string::npos);
  // Both CPUs: SeaBIOS started the second one (INIT-SIPI) and parked it,
  // and Linux woke it again through the tables SeaBIOS installed from fw_cfg.
  EXPECT_EQ(guest_ok(console, "grep -c ^processor /proc/cpuinfo"), "2\n");
  // The ACPI tables are the ones hostvisor built (SeaBIOS only placed them)
  // and the SMBIOS tables say who made the BIOS: SeaBIOS, with hostvisor's
  // system description from etc/smbios.
  EXPECT_EQ(guest_ok(console, "head -c 16 /sys/firmware/acpi/tables/DSDT | tail -c 6"), "HSTVSR");
  EXPECT_EQ(guest_ok(console, "cat /sys/class/dmi/id/sys_vendor"), "hostvisor\n");
  // The RAM the firmware reported (its e820, from etc/e820) is the machine's.
  const std::string total = guest_ok(console, "sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo");
  const long kib = std::stol(total.empty() ? "0" : total);
  EXPECT_GT(kib, 400 * 1024) << "MemTotal " << total;
  EXPECT_LE(kib, 512 * 1024) << "MemTotal " << total;
  // The disk the firmware booted is the guest's vda, the ISO on it.
  guest_ok(console, "grep -q ' vda$' /proc/partitions");

  // reboot: the machine resets and SeaBIOS runs again from its ROM.
  ASSERT_TRUE(console.send_line("reboot")) << console.failure();
  const double second = expect_firmware_boot_to_shell(console);
  std::printf("reboot to the shell: %.1f s\n", second);
  EXPECT_EQ(guest_ok(console, "grep -c ^processor /proc/cpuinfo"), "2\n");
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(seconds(90));
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, 0) << console.err();
  EXPECT_NE(console.err().find("rebooting"), std::string::npos) << console.err();

  // The firmware's debug log went to --firmware-log, not to the console.
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("Found QEMU fw_cfg"), std::string::npos) << text.substr(0, 2000);
  EXPECT_NE(text.find("QEMU fw_cfg DMA interface supported"), std::string::npos);
  EXPECT_EQ(console.out().find("Found QEMU fw_cfg"), std::string::npos);
}

// --kernel with --firmware: SeaBIOS runs QEMU's linuxboot option ROM, which
// copies the kernel, initrd and command line from fw_cfg and enters the
// kernel's real-mode setup; the same shell as direct boot follows.
TEST(FirmwareBios, KernelHandedToTheFirmwareBootsToTheSameShellAsDirectBoot) {
  auto guest = guest::prepare_default_guest({});
  ASSERT_TRUE(guest) << guest.error().message();
  GuestConsole console;
  ScratchDir dir("firmware-kernel");
  ASSERT_FALSE(dir.path.empty());
  ASSERT_TRUE(console.start(
      hostvisor_args({"--kernel", guest->kernel_path, "--initrd", guest->initrd_path, "--append",
                      guest->cmdline + " fwboot=1", "--net", "none", "--snapshot-dir", (dir.path / "snap").string()})))
      << console.failure();
  ASSERT_TRUE(console.wait_for_text("SeaBIOS (version", seconds(60))) << console.failure();
  ASSERT_TRUE(console.wait_for_text("Booting from ROM", seconds(60))) << console.failure();
  auto banner = console.wait_for_regex(kBanner, kBootTimeout);
  ASSERT_TRUE(banner) << console.failure();
  // The command line as given (no file name in front: the Linux protocol
  // has none).
  EXPECT_EQ(guest_ok(console, "cat /proc/cmdline"), guest->cmdline + " fwboot=1\n");
  // A snapshot of a machine booted through firmware is refused, with the reason.
  ASSERT_TRUE(console.send_keys("\x01s")) << console.failure();
  EXPECT_TRUE(console.wait_for_text(
      "snapshots of a machine booted through firmware (--firmware bios) are not supported", seconds(30)))
      << console.failure();
  EXPECT_FALSE(fs::exists(dir.path / "snap"));
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(seconds(90));
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, 0) << console.err();
}

TEST(FirmwareBios, NothingBootableShowsTheFirmwaresMessageAndEndsWithStatus3UnderNoReboot) {
  ScratchDir dir("firmware-empty");
  ASSERT_FALSE(dir.path.empty());
  const fs::path disk = dir.path / "empty.raw";
  {
    std::ofstream out(disk, std::ios::binary);
    out.seekp((1 << 20) - 1);
    out.put('\0');
  }
  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--disk", disk.string(), "--net", "none", "--no-reboot"})))
      << console.failure();
  ASSERT_TRUE(console.wait_for_text("No bootable device.", seconds(120))) << console.failure();
  const auto start = std::chrono::steady_clock::now();
  const auto status = console.wait_exit(seconds(60));
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, 3) << console.err();
  // etc/boot-fail-wait: five seconds before the reset.
  EXPECT_GE(waited, 4.0);
  EXPECT_NE(console.err().find("reset"), std::string::npos) << console.err();
}

// The same firmware on the kvm backend. This host's /dev/kvm may run about
// a million instructions a second, so only up to SeaBIOS's banner: it
// started at the reset vector, found fw_cfg (the debug log says so) and
// reached its serial console.
TEST(FirmwareBios, SeabiosReachesItsBannerOnKvm) {
  HV_SKIP_WITHOUT_DEV_KVM("FirmwareBios.SeabiosReachesItsBannerOnKvm");
  ScratchDir dir("firmware-kvm");
  ASSERT_FALSE(dir.path.empty());
  const fs::path log = dir.path / "seabios.log";
  GuestConsole console;
  ASSERT_TRUE(console.start(
      {HOSTVISOR_PATH, "run", "--accel", "kvm", "--firmware", "bios", "--net", "none", "--firmware-log", log.string()}))
      << console.failure();
  ASSERT_TRUE(console.wait_for_text("SeaBIOS (version", seconds(120))) << console.failure();
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("Found QEMU fw_cfg"), std::string::npos) << text.substr(0, 2000);
  EXPECT_NE(text.find("Running on QEMU (q35)"), std::string::npos) << text.substr(0, 2000);
}

TEST(FirmwareBios, OptionsTheMachineCannotHonourAreRefusedWithAOneLineError) {
  for (const auto& [args, expected] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--firmware", "coreboot"}, "--firmware coreboot: must be bios, uefi or none"},
           {{"--firmware-log", "/tmp/x"}, "--firmware-log: there is no firmware to log"},
           {{"--firmware", "bios,vars=/tmp/x"}, "--firmware bios,vars=/tmp/x: only uefi takes options"},
           {{"--firmware", "uefi,store=/tmp/x"}, "the one option of uefi is vars=PATH"},
       }) {
    std::vector<std::string> argv = {HOSTVISOR_PATH, "run", "--accel", "emu"};
    argv.insert(argv.end(), args.begin(), args.end());
    GuestConsole console;
    ASSERT_TRUE(console.start(argv)) << console.failure();
    const auto status = console.wait_exit(seconds(30));
    ASSERT_TRUE(status) << console.failure();
    EXPECT_EQ(*status, 2);
    EXPECT_NE(console.err().find(expected), std::string::npos) << console.err();
  }
}

}  // namespace
}  // namespace hostvisor::testing

namespace hostvisor::testing {
namespace {

std::string file_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// `text` as UEFI stores names: UTF-16LE.
std::string utf16(const std::string& text) {
  std::string out;
  for (char c : text) out += std::string{c, '\0'};
  return out;
}

// From power-on under OVMF: its boot manager's lines on the serial console,
// GRUB's menu, then the default guest's shell.
double expect_uefi_boot_to_shell(GuestConsole& console) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(console.wait_for_text("BdsDxe: starting Boot", seconds(120))) << console.failure();
  EXPECT_TRUE(console.wait_for_text("GNU GRUB", seconds(60))) << console.failure();
  EXPECT_TRUE(console.wait_for_regex(kBanner, kBootTimeout)) << console.failure();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

constexpr const char* kOvmfVarsTemplate = "/usr/share/OVMF/OVMF_VARS_4M.fd";

// The GRUB hybrid ISO as a plain disk under OVMF: its EFI image boots the
// default guest; the boot entries OVMF writes land in the vars file
// (through the CFI flash) and are there again after a reboot, which runs
// OVMF anew from its flash.
TEST(FirmwareUefi, GrubIsoOnADiskBootsToTheShellAndVariablesPersistAcrossAReboot) {
  ScratchDir dir("firmware-uefi");
  ASSERT_FALSE(dir.path.empty());
  std::string error;
  const std::string iso = default_guest_iso(dir.path, &error);
  ASSERT_FALSE(iso.empty()) << error;
  const fs::path vars = dir.path / "vars.fd";

  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--cpus", "2", "--memory", "512M", "--disk", iso + ",readonly=on", "--net",
                                            "none"},
                                           "uefi,vars=" + vars.string())))
      << console.failure();
  const double first = expect_uefi_boot_to_shell(console);
  std::printf("power-on to the shell through OVMF and GRUB: %.1f s\n", first);

  // Linux came up through UEFI, on both CPUs (OVMF started the second one
  // and parked it; Linux woke it from the MADT OVMF installed).
  EXPECT_EQ(guest_ok(console, "test -d /sys/firmware/efi && echo uefi"), "uefi\n");
  EXPECT_EQ(guest_ok(console, "grep -c ^processor /proc/cpuinfo"), "2\n");
  EXPECT_NE(guest_ok(console, "cat /proc/cmdline").find("BOOT_IMAGE=/boot/vmlinuz "), std::string::npos);
  EXPECT_EQ(guest_ok(console, "head -c 16 /sys/firmware/acpi/tables/DSDT | tail -c 6"), "HSTVSR");
  // OVMF's boot entries went through the flash into the vars file: the
  // option for the virtio disk it booted, and the order.
  const std::string stored = file_text(vars);
  EXPECT_NE(stored.find(utf16("UEFI Misc Device")), std::string::npos) << "no boot entry for the disk in " << vars;
  EXPECT_NE(stored.find(utf16("BootOrder")), std::string::npos);
  EXPECT_EQ(file_text(kOvmfVarsTemplate).find(utf16("UEFI Misc Device")), std::string::npos);

  ASSERT_TRUE(console.send_line("reboot")) << console.failure();
  const double second = expect_uefi_boot_to_shell(console);
  std::printf("reboot to the shell: %.1f s\n", second);
  // The rebuilt machine read its flash back from the file, and OVMF found
  // its entry there (it would otherwise write it anew): the store is as big
  // as it was and still holds the entry.
  EXPECT_EQ(guest_ok(console, "test -d /sys/firmware/efi && echo uefi"), "uefi\n");
  EXPECT_NE(file_text(vars).find(utf16("UEFI Misc Device")), std::string::npos);
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(seconds(90));
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, 0) << console.err();
  EXPECT_NE(console.err().find("rebooting"), std::string::npos) << console.err();
}

// An installed-style UEFI disk: GPT, one EFI system partition (FAT, made
// with mtools) holding GRUB as EFI/BOOT/BOOTX64.EFI (grub-mkstandalone,
// its grub.cfg inside) and the default guest's kernel and initramfs. OVMF
// finds the removable-media path on its own, with a fresh variable store.
TEST(FirmwareUefi, GptDiskWithAnEfiSystemPartitionBootsToTheShell) {
  ScratchDir dir("firmware-uefi-gpt");
  ASSERT_FALSE(dir.path.empty());
  auto guest = guest::prepare_default_guest({});
  ASSERT_TRUE(guest) << guest.error().message();
  std::ofstream(dir.path / "grub.cfg") << "set timeout=1\n"
                                          "insmod part_gpt\n"
                                          "insmod fat\n"
                                          "search --no-floppy --file --set=root /vmlinuz\n"
                                          "menuentry 'hostvisor default guest' {\n"
                                          "  linux /vmlinuz "
                                       << guest->cmdline << " esp=1\n"
                                       << "  initrd /initrd.img\n"
                                          "}\n";
  const std::string disk = (dir.path / "esp.img").string(), efi = (dir.path / "BOOTX64.EFI").string();
  const std::string esp = "-i '" + disk + "@@1M' ";
  std::string out;
  // 64 MiB: the partition from 1 MiB to the backup GPT (128991 sectors).
  const std::string build =
      "grub-mkstandalone -O x86_64-efi -o '" + efi + "' 'boot/grub/grub.cfg=" + (dir.path / "grub.cfg").string() +
      "' && truncate -s 64M '" + disk + "' && sgdisk -n 1:2048:0 -t 1:ef00 '" + disk + "' && mformat " + esp +
      "-T 128991 -v ESP :: && mmd " + esp + "::/EFI ::/EFI/BOOT && mcopy " + esp + "'" + efi +
      "' ::/EFI/BOOT/BOOTX64.EFI && mcopy " + esp + "'" + guest->kernel_path + "' ::/vmlinuz && mcopy " + esp + "'" +
      guest->initrd_path + "' ::/initrd.img";
  ASSERT_EQ(host_command(build, &out), 0)
      << "making the disk (Debian's grub-efi-amd64-bin, gdisk and mtools): " << out;

  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--memory", "512M", "--disk", disk, "--net", "none"}, "uefi")))
      << console.failure();
  expect_uefi_boot_to_shell(console);
  EXPECT_NE(guest_ok(console, "cat /proc/cmdline").find(" esp=1"), std::string::npos);
  EXPECT_EQ(guest_ok(console, "test -d /sys/firmware/efi && echo uefi"), "uefi\n");
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(seconds(90));
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, 0) << console.err();
}

// --kernel with OVMF: its fw_cfg kernel loader starts the kernel's EFI stub
// with the initrd and command line from fw_cfg.
TEST(FirmwareUefi, KernelHandedToOvmfBootsToTheSameShellAsDirectBoot) {
  auto guest = guest::prepare_default_guest({});
  ASSERT_TRUE(guest) << guest.error().message();
  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--kernel", guest->kernel_path, "--initrd", guest->initrd_path, "--append",
                                            guest->cmdline + " fwboot=uefi", "--net", "none"},
                                           "uefi")))
      << console.failure();
  ASSERT_TRUE(console.wait_for_text("EFI stub: Loaded initrd", seconds(120))) << console.failure();
  ASSERT_TRUE(console.wait_for_regex(kBanner, kBootTimeout)) << console.failure();
  // The command line as given; OVMF's loader appends where it put the initrd
  // (as under QEMU).
  EXPECT_EQ(guest_ok(console, "cat /proc/cmdline"), guest->cmdline + " fwboot=uefi initrd=initrd\n");
  EXPECT_EQ(guest_ok(console, "test -d /sys/firmware/efi && echo uefi"), "uefi\n");
  ASSERT_TRUE(console.send_line("poweroff")) << console.failure();
  const auto status = console.wait_exit(seconds(90));
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, 0) << console.err();
}

// OVMF on the kvm backend, up to its first output on the serial console
// (its boot manager's screen set-up: SEC, PEI and DXE ran from the flash,
// with the same LPC bridge, fw_cfg and flash as on emu). This host's
// /dev/kvm may be kvm_pvm, whose in-kernel instruction emulator has no x87:
// OVMF's SEC begins with FINIT, so there it cannot start at all; that case
// is a loud skip naming the host's limit, any other failure fails.
TEST(FirmwareUefi, OvmfReachesItsFirstSerialOutputOnKvm) {
  HV_SKIP_WITHOUT_DEV_KVM("FirmwareUefi.OvmfReachesItsFirstSerialOutputOnKvm");
  GuestConsole console;
  ASSERT_TRUE(console.start({HOSTVISOR_PATH, "run", "--accel", "kvm", "--firmware", "uefi", "--net", "none"}))
      << console.failure();
  if (!console.wait_for_text("\x1b[2J", seconds(300))) {
    const std::string err = console.err();
    if (err.find("kvm_pvm") != std::string::npos && err.find("instruction emulation failed") != std::string::npos)
      GTEST_SKIP() << "\n*** this host's /dev/kvm is kvm_pvm, whose instruction emulator cannot run OVMF's first "
                      "x87 instruction (FINIT in SEC): FirmwareUefi.OvmfReachesItsFirstSerialOutputOnKvm did NOT run. "
                      "***\n"
                   << err;
    FAIL() << console.failure() << "\n" << err;
  }
}

TEST(FirmwareUefi, AVariableStoreOfTheWrongSizeIsRefusedWithAOneLineError) {
  ScratchDir dir("firmware-uefi-vars");
  ASSERT_FALSE(dir.path.empty());
  const fs::path vars = dir.path / "small.fd";
  std::ofstream(vars) << "not a variable store";
  GuestConsole console;
  ASSERT_TRUE(console.start(hostvisor_args({"--net", "none"}, "uefi,vars=" + vars.string()))) << console.failure();
  const auto status = console.wait_exit(seconds(30));
  ASSERT_TRUE(status) << console.failure();
  EXPECT_EQ(*status, 1);
  EXPECT_NE(console.err().find(vars.string() + " is 20 bytes; OVMF_CODE_4M.fd needs a 540672-byte variable store"),
            std::string::npos)
      << console.err();
}

}  // namespace
}  // namespace hostvisor::testing
