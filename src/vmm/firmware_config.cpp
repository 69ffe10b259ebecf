#include "vmm/firmware_config.h"

#include <filesystem>

#include "arch/x86_64/acpi/acpi_tables.h"
#include "arch/x86_64/e820.h"
#include "arch/x86_64/firmware_linux_boot.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/smbios/smbios_tables.h"
#include "base/fd.h"
#include "devices/bus/bus.h"
#include "devices/fw_cfg/fw_cfg.h"
#include "devices/fw_cfg/fw_cfg_spec.h"

namespace hostvisor {

namespace {

std::vector<uint8_t> le_bytes(uint64_t value, size_t size) {
  std::vector<uint8_t> out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
  return out;
}

smbios::SystemDescription describe_system(const MachineConfig& config, const arch::MemoryLayout& layout) {
  smbios::SystemDescription system;
  system.cpu_count = config.cpus;
  system.layout = layout;
  return system;
}

std::vector<uint8_t> bytes_of(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

// --kernel with --firmware: the kernel, initrd and command line in fw_cfg's
// kernel items, and QEMU's linuxboot option ROM (package qemu-system-data),
// which SeaBIOS runs to copy them into place and start the kernel.
Result<void> add_firmware_kernel(FwCfg& fw_cfg, const MachineConfig& config, const arch::MemoryLayout& layout) {
  auto rom = read_file(kLinuxBootRomPath);
  if (!rom)
    return Error(ErrorCode::kNotFound, std::string(kLinuxBootRomPath) + ": " + rom.error().message() +
                                           "; --kernel with --firmware needs QEMU's linuxboot option ROM from Debian's "
                                           "qemu-system-data package (apt-get install qemu-system-data)");
  const std::string kernel = HV_TRY(read_file(config.kernel_path));
  std::string initrd;
  if (!config.initrd_path.empty()) initrd = HV_TRY(read_file(config.initrd_path));
  auto prepared = arch::prepare_firmware_linux_boot(
      std::span(reinterpret_cast<const uint8_t*>(kernel.data()), kernel.size()),
      std::span(reinterpret_cast<const uint8_t*>(initrd.data()), initrd.size()), config.cmdline, layout);
  if (!prepared) return std::move(prepared).error().with_context(config.kernel_path);
  arch::FirmwareLinuxBoot& boot = *prepared;
  HV_TRY(fw_cfg.set_item(fw_cfg::kSetupAddr, le_bytes(arch::kFirmwareSetupAddress, 4)));
  HV_TRY(fw_cfg.set_item(fw_cfg::kSetupSize, le_bytes(boot.setup.size(), 4)));
  HV_TRY(fw_cfg.set_item(fw_cfg::kSetupData, std::move(boot.setup)));
  HV_TRY(fw_cfg.set_item(fw_cfg::kKernelAddr, le_bytes(arch::kFirmwareKernelAddress, 4)));
  HV_TRY(fw_cfg.set_item(fw_cfg::kKernelSize, le_bytes(boot.kernel.size(), 4)));
  HV_TRY(fw_cfg.set_item(fw_cfg::kKernelData, std::move(boot.kernel)));
  HV_TRY(fw_cfg.set_item(fw_cfg::kInitrdAddr, le_bytes(boot.initrd_address, 4)));
  HV_TRY(fw_cfg.set_item(fw_cfg::kInitrdSize, le_bytes(boot.initrd.size(), 4)));
  HV_TRY(fw_cfg.set_item(fw_cfg::kInitrdData, std::move(boot.initrd)));
  std::vector<uint8_t> cmdline = bytes_of(boot.cmdline);
  cmdline.push_back(0);
  HV_TRY(fw_cfg.set_item(fw_cfg::kCmdlineAddr, le_bytes(arch::kFirmwareCmdlineAddress, 4)));
  HV_TRY(fw_cfg.set_item(fw_cfg::kCmdlineSize, le_bytes(cmdline.size(), 4)));
  HV_TRY(fw_cfg.set_item(fw_cfg::kCmdlineData, std::move(cmdline)));
  HV_TRY(fw_cfg.add_file(kLinuxBootRomFile, bytes_of(*rom)));
  return ok();
}

}  // namespace

Result<void> write_smbios_tables(GuestMemory& memory, const MachineConfig& config, const arch::MemoryLayout& layout) {
  const std::vector<uint8_t> block = smbios::place_smbios_tables(
      smbios::build_smbios_tables(describe_system(config, layout)), static_cast<uint32_t>(arch::kSmbiosStart));
  if (block.size() > arch::kSmbiosEnd - arch::kSmbiosStart)
    return Error(ErrorCode::kOutOfRange, "SMBIOS tables need " + std::to_string(block.size()) + " bytes, only " +
                                             std::to_string(arch::kSmbiosEnd - arch::kSmbiosStart) + " reserved");
  return memory.write(GuestAddress(arch::kSmbiosStart), block);
}

Result<std::shared_ptr<FwCfg>> add_fw_cfg(Bus& pio_bus, GuestMemory& memory, const MachineConfig& config,
                                          const arch::MemoryLayout& layout, const acpi::PlatformDescription& platform,
                                          const std::vector<BootCandidate>& boot) {
  auto fw_cfg = std::make_shared<FwCfg>(memory);
  // No -uuid: all zeros, as QEMU gives without one (SMBIOS type 1 says the same).
  HV_TRY(fw_cfg->set_item(fw_cfg::kUuid, std::vector<uint8_t>(16, 0)));
  HV_TRY(fw_cfg->set_item(fw_cfg::kRamSize, le_bytes(layout.ram_size, 8)));
  // There is no display: firmware should not wait for one.
  HV_TRY(fw_cfg->set_item(fw_cfg::kNoGraphic, le_bytes(1, 2)));
  HV_TRY(fw_cfg->set_item(fw_cfg::kNbCpus, le_bytes(config.cpus, 2)));
  // No CPU hotplug: the CPUs present are all there will be.
  HV_TRY(fw_cfg->set_item(fw_cfg::kMaxCpus, le_bytes(config.cpus, 2)));
  // The same map the boot protocols hand a kernel, so firmware and direct
  // boot agree on what is RAM.
  HV_TRY(fw_cfg->add_file("etc/e820", arch::encode_e820_table(arch::e820_map(layout))));
  HV_TRY(fw_cfg->add_file("etc/boot-fail-wait", le_bytes(kBootFailWaitMilliseconds, 4)));
  // Firmware output and its menus on COM1 for a VM without a display
  // (SeaBIOS's serial console).
  HV_TRY(fw_cfg->add_file("etc/sercon-port", le_bytes(arch::kCom1Port, 2)));
  // Boot devices in order, one OpenFirmware path a line: a kernel handed
  // to the firmware first, as under QEMU, then the devices given a
  // bootindex. Those without one come after them, in the firmware's own
  // order; with no line at all that is its order for every device.
  const bool firmware_kernel = config.firmware != FirmwareKind::kNone && !config.kernel_path.empty();
  const std::string bootorder =
      build_bootorder(firmware_kernel ? std::string("/rom@") + kLinuxBootRomFile : std::string(), boot);
  HV_TRY(fw_cfg->add_file("bootorder", std::vector<uint8_t>(bootorder.begin(), bootorder.end())));
  if (firmware_kernel) HV_TRY(add_firmware_kernel(*fw_cfg, config, layout));

  for (const auto& file : config.fw_cfg_files) {
    std::string contents = file.text;
    if (!file.host_path.empty()) {
      // Checked before reading, so a huge file is refused without loading it.
      std::error_code error;
      const uint64_t size = std::filesystem::file_size(file.host_path, error);
      if (!error && size > kMaxUserFileSize)
        return Error(ErrorCode::kInvalidArgument, "--fw-cfg " + file.name + ": " + file.host_path + " is " +
                                                      std::to_string(size) + " bytes; fw_cfg files here are at most " +
                                                      std::to_string(kMaxUserFileSize >> 20) + " MiB");
      auto read = read_file(file.host_path);
      if (!read) return std::move(read).error().with_context("--fw-cfg " + file.name);
      contents = std::move(*read);
    }
    auto added = fw_cfg->add_file(file.name, std::vector<uint8_t>(contents.begin(), contents.end()));
    if (!added) return std::move(added).error().with_context("--fw-cfg");
  }

  // ACPI as QEMU hands it over: firmware runs the loader script, which
  // places the tables and patches their pointers and checksums.
  acpi::FirmwareAcpiTables acpi = HV_TRY(acpi::build_firmware_acpi_tables(platform));
  HV_TRY(fw_cfg->add_file(acpi::kFirmwareRsdpFile, std::move(acpi.rsdp)));
  HV_TRY(fw_cfg->add_file(acpi::kFirmwareTablesFile, std::move(acpi.tables)));
  HV_TRY(fw_cfg->add_file("etc/table-loader", std::move(acpi.loader)));

  smbios::SmbiosTables smbios = smbios::build_smbios_tables(describe_system(config, layout));
  HV_TRY(fw_cfg->add_file("etc/smbios/smbios-anchor", std::move(smbios.anchor)));
  HV_TRY(fw_cfg->add_file("etc/smbios/smbios-tables", std::move(smbios.tables)));

  HV_TRY(pio_bus.insert(fw_cfg, arch::kFwCfgPort, arch::kFwCfgPortCount));
  return fw_cfg;
}

}  // namespace hostvisor
