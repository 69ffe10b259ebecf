// The AHCI controller and its ATAPI CD-ROM on hostile guest memory and
// register writes: command lists, command tables, FISes, ATAPI packets and
// PRDTs are all the fuzzer's. The controller must never crash, never touch
// memory outside guest RAM (GuestMemory traps nothing, ASan does), never
// write the image, and keep its registers in range.
//
// Input: [0] the number of register writes that follow (mod 24), each a
// little-endian u16 ABAR offset and u32 value; the rest is guest RAM
// (64 KiB; the command list at 0, the FIS area at 0x400). After the
// script every slot is issued.
#include <array>
#include <cstdint>
#include <vector>

#include "devices/ahci/ahci_command.h"
#include "devices/ahci/ahci_controller.h"
#include "devices/ahci/ahci_spec.h"
#include "devices/cdrom/testing/memory_image.h"
#include "fuzz/fuzz_input.h"
#include "hv/testing/recording_interrupt_controller.h"

using namespace hostvisor;
using hostvisor::fuzz::take;

namespace {
constexpr uint64_t kRamSize = 64 * 1024;
constexpr uint32_t kSectors = 24;

void write_register(AhciController& hba, uint32_t offset, uint32_t value) {
  hba.bar_write(ahci::kAbarIndex, offset, std::span(reinterpret_cast<const uint8_t*>(&value), 4));
}
uint32_t read_register(AhciController& hba, uint32_t offset) {
  uint32_t value = 0;
  hba.bar_read(ahci::kAbarIndex, offset, std::span(reinterpret_cast<uint8_t*>(&value), 4));
  return value;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static GuestMemory memory = std::move(GuestMemory::create({{GuestAddress(0), kRamSize}})).value();
  struct Write {
    uint16_t offset;
    uint32_t value;
  };
  std::vector<Write> script(take<uint8_t>(data, size) % 24);
  for (Write& w : script) {
    w.offset = take<uint16_t>(data, size) % ahci::kAbarSize & ~3u;
    w.value = take<uint32_t>(data, size);
  }
  (void)memory.fill(GuestAddress(0), 0, kRamSize);
  (void)memory.write(GuestAddress(0), std::span(data, size < kRamSize ? size : kRamSize));

  // The parser on its own, every slot.
  for (unsigned slot = 0; slot < ahci::kCommandSlots; ++slot) {
    auto command = ahci::read_command(memory, 0, slot);
    if (command && (command->prdt.size() > ahci::kMaxPrdtEntries)) __builtin_trap();
  }

  auto image = std::make_shared<testing::MemoryImage>(testing::patterned_sectors(kSectors));
  std::vector<std::unique_ptr<AtapiCdrom>> drives;
  drives.push_back(std::make_unique<AtapiCdrom>(std::move(MmcCdrom::create(image)).value()));
  AhciController hba(memory, std::move(drives));
  testing::RecordingInterruptController interrupts;
  hba.attached(PciAttachment{PciAddress{0, 4, 0}, &interrupts, 17});
  hba.config_write(pci_reg::kCommand, 2, pci_command::kMemorySpace | pci_command::kBusMaster);
  const uint32_t port = ahci::kPortBase;
  write_register(hba, port + ahci::kPxClb, 0);
  write_register(hba, port + ahci::kPxFb, 0x400);
  write_register(hba, port + ahci::kPxIe, 0xffffffff);
  write_register(hba, ahci::kGhc, ahci::kGhcIe);
  write_register(hba, port + ahci::kPxCmd, ahci::kCmdFre | ahci::kCmdSt);
  for (const Write& w : script) write_register(hba, w.offset, w.value);
  write_register(hba, port + ahci::kPxCi, 0xffffffff);

  for (uint32_t offset = 0; offset < 0x200; offset += 4) (void)read_register(hba, offset);
  if (read_register(hba, ahci::kPi) != 1) __builtin_trap();
  if (read_register(hba, port + ahci::kPxIe) & ~ahci::kIeWritable) __builtin_trap();
  return 0;
}
