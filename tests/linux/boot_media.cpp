#include "tests/linux/boot_media.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

namespace hostvisor::testing {

namespace fs = std::filesystem;

int host_command(const std::string& command, std::string* output) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output->append(buf, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

namespace {

std::string grub_cfg(const BootMediaContents& contents) {
  std::string cmdline = contents.guest.cmdline;
  if (!contents.extra_cmdline.empty()) cmdline += " " + contents.extra_cmdline;
  return "set timeout=1\n"
         "menuentry '" +
         contents.title +
         "' {\n"
         "  linux /boot/vmlinuz " +
         cmdline +
         "\n"
         "  initrd /boot/initrd.img\n"
         "}\n";
}

// The tree both media hold: /boot with the kernel, initramfs and grub.cfg,
// and the extra files.
bool fill_tree(const fs::path& tree, const BootMediaContents& contents, std::string* error) {
  std::error_code ec;
  fs::create_directories(tree / "boot/grub", ec);
  fs::copy_file(contents.guest.kernel_path, tree / "boot/vmlinuz", ec);
  if (!ec) fs::copy_file(contents.guest.initrd_path, tree / "boot/initrd.img", ec);
  if (ec) {
    *error = "copying the guest into " + tree.string() + ": " + ec.message();
    return false;
  }
  std::ofstream(tree / "boot/grub/grub.cfg") << grub_cfg(contents);
  for (const auto& [path, text] : contents.files) {
    fs::create_directories((tree / path).parent_path(), ec);
    std::ofstream(tree / path, std::ios::binary) << text;
  }
  return true;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

std::string make_grub_iso(const fs::path& dir, const std::string& name, const BootMediaContents& contents,
                          std::string* error) {
  const fs::path tree = dir / (name + "-tree");
  if (!fill_tree(tree, contents, error)) return "";
  const fs::path iso = dir / (name + ".iso");
  std::string out;
  if (host_command("grub-mkrescue -o '" + iso.string() + "' '" + tree.string() + "'", &out) != 0) {
    *error = "grub-mkrescue (Debian's grub-common, grub-pc-bin, grub-efi-amd64-bin, xorriso, mtools): " + out;
    return "";
  }
  return iso.string();
}

std::string make_installed_disk(const fs::path& dir, const std::string& name, const BootMediaContents& contents,
                                std::string* error) {
  constexpr uint64_t kSector = 512;
  constexpr uint64_t kPartitionStart = 2048;  // 1 MiB: GRUB's core.img goes in the gap before it
  constexpr uint64_t kPartitionBytes = 64ull << 20;
  const fs::path tree = dir / (name + "-root");
  if (!fill_tree(tree, contents, error)) return "";
  const fs::path raw = dir / (name + ".raw");
  const fs::path core = dir / (name + "-core.img");
  const std::string grub_dir = "/usr/lib/grub/i386-pc";
  std::string out;

  // The ext4 root, written straight into the partition's place in the file.
  {
    std::ofstream(raw, std::ios::binary).close();
    fs::resize_file(raw, kPartitionStart * kSector + kPartitionBytes);
  }
  if (host_command("mke2fs -q -F -t ext4 -L hvroot -d '" + tree.string() +
                       "' -E offset=" + std::to_string(kPartitionStart * kSector) + " '" + raw.string() + "' " +
                       std::to_string(kPartitionBytes >> 10) + "k",
                   &out) != 0) {
    *error = "mke2fs -d (Debian's e2fsprogs): " + out;
    return "";
  }
  // core.img: finds the partition by itself (prefix on the boot disk) and
  // reads /boot/grub/grub.cfg through normal.
  if (host_command("grub-mkimage -O i386-pc -d " + grub_dir + " -o '" + core.string() +
                       "' -p '(hd0,msdos1)/boot/grub' biosdisk part_msdos ext2 normal linux configfile echo "
                       "serial terminal",
                   &out) != 0) {
    *error = "grub-mkimage (Debian's grub-pc-bin): " + out;
    return "";
  }
  const std::string core_image = read_bytes(core);
  std::string mbr = read_bytes(grub_dir + "/boot.img");
  if (mbr.size() != kSector || core_image.empty() || core_image.size() > (kPartitionStart - 1) * kSector) {
    *error = "boot.img is " + std::to_string(mbr.size()) + " bytes, core.img " + std::to_string(core_image.size());
    return "";
  }
  // boot.img loads core.img's first sector from LBA 1 (its default
  // kernel_sector), and that sector (diskboot.img) the rest from LBA 2 on
  // (its default blocklist, which grub-mkimage sized): so core.img goes at
  // LBA 1 as it is. The partition table: one bootable Linux partition.
  uint8_t* entry = reinterpret_cast<uint8_t*>(mbr.data()) + 446;
  std::memset(entry, 0, 64);
  entry[0] = 0x80;
  entry[1] = 0xfe, entry[2] = 0xff, entry[3] = 0xff;  // CHS: beyond what CHS can say; LBA rules
  entry[4] = 0x83;
  entry[5] = 0xfe, entry[6] = 0xff, entry[7] = 0xff;
  const uint32_t start = kPartitionStart, count = kPartitionBytes / kSector;
  std::memcpy(entry + 8, &start, 4);
  std::memcpy(entry + 12, &count, 4);
  mbr[510] = 0x55;
  mbr[511] = static_cast<char>(0xaa);
  {
    std::fstream disk(raw, std::ios::binary | std::ios::in | std::ios::out);
    disk.write(mbr.data(), static_cast<std::streamsize>(mbr.size()));
    disk.seekp(kSector);
    disk.write(core_image.data(), static_cast<std::streamsize>(core_image.size()));
    if (!disk) {
      *error = "writing the MBR and core.img into " + raw.string();
      return "";
    }
  }
  const fs::path qcow2 = dir / (name + ".qcow2");
  if (host_command("qemu-img convert -f raw -O qcow2 '" + raw.string() + "' '" + qcow2.string() + "'", &out) != 0) {
    *error = "qemu-img convert (Debian's qemu-utils): " + out;
    return "";
  }
  fs::remove(raw);
  return qcow2.string();
}

}  // namespace hostvisor::testing
