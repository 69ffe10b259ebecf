// The AHCI controller driven as a guest driver would: registers after a
// reset, commands laid out in guest RAM (command list, table, PRDT), the
// ATAPI drive's answers in the FIS receive area, interrupts; and hostile
// command lists that must stop the port, never the host.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <functional>

#include "devices/ahci/ahci_command.h"
#include "devices/ahci/ahci_controller.h"
#include "devices/ahci/ahci_spec.h"
#include "devices/cdrom/testing/memory_image.h"
#include "hv/testing/recording_interrupt_controller.h"

namespace hostvisor {
namespace {

using namespace ahci;

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kCommandList = 0x1000;
constexpr uint64_t kFisArea = 0x2000;
constexpr uint64_t kTable = 0x3000;
constexpr uint64_t kData = 0x10000;
constexpr uint32_t kSectors = 16;
constexpr uint32_t kGsi = 17;
constexpr uint64_t kMsiAddress = 0xfee01000;
constexpr uint32_t kMsiData = 0x4041;

class AhciTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto image = std::make_shared<testing::MemoryImage>(testing::patterned_sectors(kSectors));
    std::vector<std::unique_ptr<AtapiCdrom>> drives;
    drives.push_back(std::make_unique<AtapiCdrom>(std::move(MmcCdrom::create(image)).value()));
    hba = std::make_unique<AhciController>(memory, std::move(drives));
    hba->attached(PciAttachment{PciAddress{0, 4, 0}, &interrupts, kGsi});
    hba->config_write(pci_reg::kCommand, 2, pci_command::kMemorySpace | pci_command::kBusMaster);
  }

  uint32_t reg(uint32_t offset) {
    uint32_t value = 0;
    hba->bar_read(kAbarIndex, offset, std::span(reinterpret_cast<uint8_t*>(&value), 4));
    return value;
  }
  void set_reg(uint32_t offset, uint32_t value) {
    hba->bar_write(kAbarIndex, offset, std::span(reinterpret_cast<const uint8_t*>(&value), 4));
  }
  uint32_t port_reg(uint32_t r) { return reg(kPortBase + r); }
  void set_port_reg(uint32_t r, uint32_t value) { set_reg(kPortBase + r, value); }

  // What a driver does before its first command: the command list and FIS
  // area, FIS receive and the engine on.
  void start_port() {
    set_port_reg(kPxClb, kCommandList);
    set_port_reg(kPxFb, kFisArea);
    set_port_reg(kPxCmd, kCmdFre);
    set_port_reg(kPxCmd, kCmdFre | kCmdSt);
  }

  // Lays out a command in slot `slot`: header, register FIS (and packet),
  // PRDT. Returns the header's address.
  uint64_t put_command(unsigned slot, uint8_t ata_command, std::span<const uint8_t> packet,
                       const std::vector<PhysicalRegion>& prdt, uint8_t features = 0, uint32_t cfl = 5) {
    const uint64_t table = kTable + slot * 0x1000;
    std::array<uint8_t, 0x80> head{};
    head[0] = kFisRegH2d;
    head[1] = kFisH2dCommandBit;
    head[2] = ata_command;
    head[3] = features;
    std::copy(packet.begin(), packet.end(), head.begin() + kTableAcmd);
    EXPECT_TRUE(memory.write(GuestAddress(table), head));
    for (size_t i = 0; i < prdt.size(); ++i) {
      const uint32_t entry[4] = {static_cast<uint32_t>(prdt[i].address), static_cast<uint32_t>(prdt[i].address >> 32),
                                 0, prdt[i].bytes - 1};
      EXPECT_TRUE(memory.write(GuestAddress(table + kTablePrdt + i * kPrdBytes),
                               std::span(reinterpret_cast<const uint8_t*>(entry), sizeof entry)));
    }
    const uint32_t header[8] = {
        cfl | (packet.empty() ? 0 : kHeaderAtapi) | static_cast<uint32_t>(prdt.size()) << kHeaderPrdtlShift,
        0xdeadbeef,
        static_cast<uint32_t>(table),
        0,
        0,
        0,
        0,
        0};
    const uint64_t at = kCommandList + slot * kCommandHeaderBytes;
    EXPECT_TRUE(memory.write(GuestAddress(at), std::span(reinterpret_cast<const uint8_t*>(header), sizeof header)));
    return at;
  }
  uint32_t prdbc(unsigned slot) {
    return memory.read_obj<uint32_t>(GuestAddress(kCommandList + slot * 32 + 4)).value();
  }
  std::array<uint8_t, 20> received(uint64_t offset) {
    std::array<uint8_t, 20> fis{};
    EXPECT_TRUE(memory.read(GuestAddress(kFisArea + offset), fis));
    return fis;
  }
  std::vector<uint8_t> ram(uint64_t address, size_t length) {
    std::vector<uint8_t> bytes(length);
    EXPECT_TRUE(memory.read(GuestAddress(address), bytes));
    return bytes;
  }

  GuestMemory memory = std::move(GuestMemory::create({{GuestAddress(0), kRamSize}})).value();
  testing::RecordingInterruptController interrupts;
  std::unique_ptr<AhciController> hba;
};

std::array<uint8_t, 12> read10(uint32_t lba, uint16_t count) {
  return {0x28,
          0,
          static_cast<uint8_t>(lba >> 24),
          static_cast<uint8_t>(lba >> 16),
          static_cast<uint8_t>(lba >> 8),
          static_cast<uint8_t>(lba),
          0,
          static_cast<uint8_t>(count >> 8),
          static_cast<uint8_t>(count),
          0,
          0,
          0};
}

TEST_F(AhciTest, AnIch9AhciFunctionWithItsRegistersInBar5AndAnAtapiDeviceOnPortZero) {
  auto& config = hba->config_space();
  EXPECT_EQ(config.raw_u16(pci_reg::kVendorId), 0x8086);
  EXPECT_EQ(config.raw_u16(pci_reg::kDeviceId), 0x2922);
  EXPECT_EQ(config.raw_u32(pci_reg::kRevision) >> 8, 0x010601u);  // mass storage, SATA, AHCI 1.0
  EXPECT_EQ(config.bar_info(kAbarIndex).size, kAbarSize);
  EXPECT_EQ(config.raw_u8(pci_reg::kInterruptPin), 1);
  // MSI is in the capability list.
  EXPECT_EQ(config.raw_u8(config.raw_u8(pci_reg::kCapabilitiesPointer)), pci_cap_id::kMsi);

  const uint32_t cap = reg(kCap);
  EXPECT_EQ(cap & 0x1f, 0u);                     // one port
  EXPECT_EQ((cap >> kCapNcsShift) & 0x1f, 31u);  // 32 slots
  EXPECT_TRUE(cap & kCapS64a);
  EXPECT_TRUE(cap & kCapSam);
  EXPECT_EQ(reg(kGhc), kGhcAe);  // AHCI only: AE reads 1
  EXPECT_EQ(reg(kPi), 1u);
  EXPECT_EQ(reg(kVs), 0x00010300u);
  EXPECT_EQ(reg(kCap2), 0u);
  EXPECT_EQ(port_reg(kPxSig), 0xeb140101u);
  EXPECT_EQ(port_reg(kPxSsts), 0x113u);
  EXPECT_EQ(port_reg(kPxTfd) & (kStatusBsy | kStatusDrq), 0u);
  EXPECT_EQ(port_reg(kPxCmd) & (kCmdSt | kCmdCr | kCmdFre | kCmdFr), 0u);
  // Beyond the one port: nothing.
  EXPECT_EQ(reg(kPortBase + kPortStride + kPxSig), 0u);
}

TEST_F(AhciTest, GhcResetPutsEveryRegisterBackAndTheEngineBitsFollowStAndFre) {
  start_port();
  EXPECT_EQ(port_reg(kPxCmd) & (kCmdSt | kCmdCr | kCmdFre | kCmdFr), kCmdSt | kCmdCr | kCmdFre | kCmdFr);
  set_port_reg(kPxIe, 0xffffffff);
  set_reg(kGhc, kGhcIe);
  EXPECT_EQ(reg(kGhc), kGhcAe | kGhcIe);
  set_reg(kGhc, kGhcHr);
  EXPECT_EQ(reg(kGhc), kGhcAe);  // HR is done and reads 0
  EXPECT_EQ(port_reg(kPxClb), 0u);
  EXPECT_EQ(port_reg(kPxFb), 0u);
  EXPECT_EQ(port_reg(kPxIe), 0u);
  EXPECT_EQ(port_reg(kPxCmd) & (kCmdSt | kCmdCr | kCmdFre | kCmdFr), 0u);
  EXPECT_EQ(port_reg(kPxSig), kSignatureAtapi);
  // Alignment: CLB's low 10 bits and FB's low 8 are reserved.
  set_port_reg(kPxClb, 0x12345fff);
  set_port_reg(kPxFb, 0x123456ff);
  EXPECT_EQ(port_reg(kPxClb), 0x12345c00u);
  EXPECT_EQ(port_reg(kPxFb), 0x12345600u);
}

TEST_F(AhciTest, IdentifyPacketDeviceAnswersWithAPioSetupFisAndIdentifyDeviceIsAbortedWithTheSignature) {
  start_port();
  put_command(0, kAtaIdentifyPacketDevice, {}, {{kData, 512}});
  set_port_reg(kPxCi, 1);
  EXPECT_EQ(port_reg(kPxCi), 0u);
  EXPECT_EQ(prdbc(0), 512u);
  const auto id = ram(kData, 512);
  EXPECT_EQ(id[0] | id[1] << 8, 0x85c0);  // ATAPI, CD-ROM, removable, 12-byte packets
  // The model, an ATA string (byte-swapped in each word).
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(id.data()) + 54, 4), "OHTS");
  EXPECT_EQ(port_reg(kPxIs) & (kIsPss | kIsDhrs), kIsPss);
  const auto pio = received(kRfisPioSetup);
  EXPECT_EQ(pio[0], kFisPioSetup);
  EXPECT_EQ(pio[15], kStatusDrdy | kStatusDsc);  // E_Status
  EXPECT_EQ(port_reg(kPxTfd), uint32_t{kStatusDrdy | kStatusDsc});
  set_port_reg(kPxIs, 0xffffffff);

  put_command(1, kAtaIdentifyDevice, {}, {{kData, 512}});
  set_port_reg(kPxCi, 2);
  EXPECT_EQ(port_reg(kPxCi), 2u) << "a failed command stays issued";
  EXPECT_TRUE(port_reg(kPxIs) & kIsTfes);
  const auto d2h = received(kRfisD2h);
  EXPECT_EQ(d2h[0], kFisRegD2h);
  EXPECT_EQ(d2h[2] & kStatusErr, kStatusErr);
  EXPECT_EQ(d2h[3], kErrorAbrt);
  EXPECT_EQ(d2h[12] | d2h[4] << 8 | d2h[5] << 16 | uint32_t{d2h[6]} << 24, kSignatureAtapi);
  // The port is stopped until software restarts it (AHCI 6.2.2.1).
  put_command(2, kAtaIdentifyPacketDevice, {}, {{kData, 512}});
  set_port_reg(kPxCi, 4);
  EXPECT_EQ(port_reg(kPxCi), 6u);
  set_port_reg(kPxCmd, kCmdFre);
  EXPECT_EQ(port_reg(kPxCi), 0u);
  EXPECT_EQ(port_reg(kPxCmd) & kCmdCr, 0u);
  set_port_reg(kPxIs, 0xffffffff);
  set_port_reg(kPxCmd, kCmdFre | kCmdSt);
  set_port_reg(kPxCi, 4);
  EXPECT_EQ(port_reg(kPxCi), 0u);
  EXPECT_EQ(port_reg(kPxIs) & kIsTfes, 0u);
}

TEST_F(AhciTest, PacketRead10LandsAcrossThePrdtRegionsAndInterruptsByMsiOrIntx) {
  start_port();
  set_port_reg(kPxIe, kIsDhrs | kIsPss | kIsTfes);
  set_reg(kGhc, kGhcIe);
  // Two sectors over three regions of odd sizes.
  const std::vector<PhysicalRegion> prdt = {{kData, 1000}, {kData + 0x4000, 2000}, {kData + 0x8000, 1096}};
  const auto cdb = read10(3, 2);
  put_command(0, kAtaPacket, cdb, prdt, /*features: DMA*/ 0x01);
  set_port_reg(kPxCi, 1);
  EXPECT_EQ(port_reg(kPxCi), 0u);
  EXPECT_EQ(prdbc(0), 4096u);
  const auto expected = testing::patterned_sectors(kSectors);
  std::vector<uint8_t> got = ram(kData, 1000);
  auto more = ram(kData + 0x4000, 2000);
  got.insert(got.end(), more.begin(), more.end());
  more = ram(kData + 0x8000, 1096);
  got.insert(got.end(), more.begin(), more.end());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), expected.begin() + 3 * 2048));
  // DMA: one D2H FIS, no PIO setup.
  EXPECT_EQ(port_reg(kPxIs) & (kIsDhrs | kIsPss), kIsDhrs);
  EXPECT_EQ(received(kRfisD2h)[2], kStatusDrdy | kStatusDsc);
  EXPECT_EQ(reg(kIs), 1u);
  // No MSI yet: the interrupt went out on INTA's GSI.
  EXPECT_TRUE(interrupts.level(kGsi));
  set_port_reg(kPxIs, kIsDhrs);
  EXPECT_EQ(reg(kIs), 0u);
  EXPECT_FALSE(interrupts.level(kGsi));

  // With MSI on, the same command sends the programmed message.
  auto& config = hba->config_space();
  const uint16_t msi = config.raw_u8(pci_reg::kCapabilitiesPointer);
  hba->config_write(msi + 4, 4, static_cast<uint32_t>(kMsiAddress));
  hba->config_write(msi + 8, 4, 0);
  hba->config_write(msi + 12, 2, kMsiData);
  hba->config_write(msi + 2, 2, Msi::kControlEnable | Msi::kControl64Bit);
  interrupts.clear();
  set_port_reg(kPxCi, 1);
  ASSERT_EQ(interrupts.msis().size(), 1u);
  EXPECT_EQ(interrupts.msis()[0], (testing::RecordingInterruptController::Msi{kMsiAddress, kMsiData}));
  EXPECT_FALSE(interrupts.level(kGsi));
}

TEST_F(AhciTest, ACheckConditionSetsTheSenseKeyInTheErrorRegisterAndRequestSenseReportsIt) {
  start_port();
  put_command(0, kAtaPacket, read10(kSectors, 1), {{kData, 2048}}, 0x01);
  set_port_reg(kPxCi, 1);
  EXPECT_TRUE(port_reg(kPxIs) & kIsTfes);
  EXPECT_EQ(port_reg(kPxTfd) & kStatusErr, kStatusErr);
  EXPECT_EQ(port_reg(kPxTfd) >> 12 & 0xf, mmc::kSenseIllegalRequest);
  // Recovery as SeaBIOS and Linux do it, then REQUEST SENSE by PIO.
  set_port_reg(kPxCmd, kCmdFre);
  set_port_reg(kPxIs, 0xffffffff);
  set_port_reg(kPxCmd, kCmdFre | kCmdSt);
  const std::array<uint8_t, 12> request_sense = {0x03, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0};
  put_command(1, kAtaPacket, request_sense, {{kData, 18}});
  set_port_reg(kPxCi, 2);
  EXPECT_EQ(port_reg(kPxCi), 0u);
  const auto sense = ram(kData, 18);
  EXPECT_EQ(sense[2] & 0xf, mmc::kSenseIllegalRequest);
  EXPECT_EQ(sense[12], mmc::kAscLbaOutOfRange);
  // PIO: a PIO setup FIS and then the D2H FIS.
  EXPECT_EQ(port_reg(kPxIs) & (kIsDhrs | kIsPss), kIsDhrs | kIsPss);
}

TEST_F(AhciTest, ComresetAndSoftResetBringTheSignatureBack) {
  start_port();
  set_port_reg(kPxSctl, kSctlDetComreset);
  EXPECT_EQ(port_reg(kPxSsts), 0u);
  EXPECT_EQ(port_reg(kPxTfd) & kStatusBsy, kStatusBsy);
  set_port_reg(kPxSctl, 0);
  EXPECT_EQ(port_reg(kPxSsts), 0x113u);
  EXPECT_EQ(port_reg(kPxTfd) & kStatusBsy, 0u);
  EXPECT_EQ(port_reg(kPxSig), kSignatureAtapi);

  // Software reset: two device control FISes, SRST set then cleared.
  for (uint8_t control : {kControlSrst, uint8_t{0}}) {
    put_command(0, 0, {}, {});
    std::array<uint8_t, 20> fis{};
    fis[0] = kFisRegH2d;
    fis[15] = control;
    ASSERT_TRUE(memory.write(GuestAddress(kTable), fis));
    set_port_reg(kPxCi, 1);
    EXPECT_EQ(port_reg(kPxCi), 0u);
    if (control) EXPECT_EQ(port_reg(kPxTfd) & kStatusBsy, kStatusBsy);
  }
  EXPECT_EQ(port_reg(kPxTfd), 0x100u);  // status 0, error 01h: diagnostics passed
  const auto d2h = received(kRfisD2h);
  EXPECT_EQ(d2h[12] | d2h[4] << 8 | d2h[5] << 16 | uint32_t{d2h[6]} << 24, kSignatureAtapi);
}

// Hostile command lists: each stops the port with a host bus fatal error,
// the host goes on, and a restart makes the port work again.
TEST_F(AhciTest, HostilePrdtsAndTablesStopThePortWithAFatalErrorAndARestartRecovers) {
  start_port();
  const auto cdb = read10(0, 1);
  struct Case {
    const char* what;
    std::function<void()> lay_out;
  };
  const std::vector<Case> cases = {
      {"a region past the end of RAM",
       [&] {
         put_command(0, kAtaPacket, cdb, {{kRamSize - 100, 2048}}, 1);
       }},
      {"a region wrapping the address space",
       [&] {
         put_command(0, kAtaPacket, cdb, {{~uint64_t{0} - 511, 2048}}, 1);
       }},
      {"a region split between RAM and beyond",
       [&] {
         put_command(0, kAtaPacket, cdb, {{kData, 1024}, {uint64_t{1} << 40, 1024}}, 1);
       }},
      {"a PRDT longer than the cap",
       [&] {
         put_command(0, kAtaPacket, cdb, {{kData, 2048}}, 1);
         const uint32_t flags = 5 | kHeaderAtapi | (kMaxPrdtEntries + 1) << kHeaderPrdtlShift;
         ASSERT_TRUE(memory.write_obj(GuestAddress(kCommandList), flags));
       }},
      {"a command FIS too short for a register FIS",
       [&] {
         put_command(0, kAtaPacket, cdb, {{kData, 2048}}, 1, 2);
       }},
      {"a command table outside RAM",
       [&] {
         put_command(0, kAtaPacket, cdb, {{kData, 2048}}, 1);
         ASSERT_TRUE(memory.write_obj(GuestAddress(kCommandList + 8), uint32_t{0xfff00000}));
       }},
      {"a FIS that is no register FIS",
       [&] {
         put_command(0, kAtaPacket, cdb, {{kData, 2048}}, 1);
         ASSERT_TRUE(memory.write_obj(GuestAddress(kTable), uint8_t{kFisRegD2h}));
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    c.lay_out();
    set_port_reg(kPxCi, 1);
    EXPECT_TRUE(port_reg(kPxIs) & kIsHbfs);
    EXPECT_EQ(port_reg(kPxCi), 1u);
    // Restart; then a good command runs.
    set_port_reg(kPxCmd, kCmdFre);
    set_port_reg(kPxIs, 0xffffffff);
    set_port_reg(kPxCmd, kCmdFre | kCmdSt);
    put_command(0, kAtaPacket, cdb, {{kData, 2048}}, 1);
    set_port_reg(kPxCi, 1);
    EXPECT_EQ(port_reg(kPxCi), 0u);
    EXPECT_EQ(port_reg(kPxIs) & (kIsHbfs | kIsTfes), 0u);
    set_port_reg(kPxIs, 0xffffffff);
  }
  // A PRDT shorter than the command's data: the drive refuses (nothing sent).
  put_command(0, kAtaPacket, read10(0, 2), {{kData, 2048}}, 1);
  set_port_reg(kPxCi, 1);
  EXPECT_TRUE(port_reg(kPxIs) & kIsTfes);
  EXPECT_EQ(prdbc(0), 0u);
}

TEST_F(AhciTest, NothingRunsWithoutBusMastering) {
  start_port();
  hba->config_write(pci_reg::kCommand, 2, pci_command::kMemorySpace);
  put_command(0, kAtaIdentifyPacketDevice, {}, {{kData, 512}});
  set_port_reg(kPxCi, 1);
  EXPECT_EQ(port_reg(kPxCi), 1u);
  EXPECT_EQ(hba->commands_completed(), 0u);
}

TEST_F(AhciTest, StateRoundTripsAndARestoredControllerGoesOn) {
  start_port();
  set_port_reg(kPxIe, kIsDhrs);
  put_command(0, kAtaSetFeatures, {}, {});
  ASSERT_TRUE(memory.write_obj(GuestAddress(kTable + 3), uint8_t{0x03}));   // set transfer mode
  ASSERT_TRUE(memory.write_obj(GuestAddress(kTable + 12), uint8_t{0x45}));  // UDMA 5
  set_port_reg(kPxCi, 1);
  ASSERT_EQ(port_reg(kPxCi), 0u);
  EXPECT_EQ(hba->drive(0).identify_data()[88 * 2 + 1], 0x20);  // UDMA 5 selected

  StateWriter out;
  AhciController::encode_state(out, hba->save());
  const std::vector<uint8_t> bytes = out.bytes();
  StateReader in(bytes, "ahci");
  const auto state = AhciController::decode_state(in);
  ASSERT_TRUE(in.finish());

  auto image = std::make_shared<testing::MemoryImage>(testing::patterned_sectors(kSectors));
  std::vector<std::unique_ptr<AtapiCdrom>> drives;
  drives.push_back(std::make_unique<AtapiCdrom>(std::move(MmcCdrom::create(image)).value()));
  hba = std::make_unique<AhciController>(memory, std::move(drives));
  hba->attached(PciAttachment{PciAddress{0, 4, 0}, &interrupts, kGsi});
  ASSERT_TRUE(hba->restore(state));
  EXPECT_EQ(port_reg(kPxClb), kCommandList);
  EXPECT_EQ(port_reg(kPxIe), kIsDhrs);
  EXPECT_EQ(port_reg(kPxCmd) & kCmdSt, kCmdSt);
  EXPECT_EQ(hba->drive(0).identify_data()[88 * 2 + 1], 0x20);
  put_command(0, kAtaPacket, read10(1, 1), {{kData, 2048}}, 1);
  set_port_reg(kPxCi, 1);
  EXPECT_EQ(port_reg(kPxCi), 0u);

  // A truncated state is refused.
  StateReader truncated(std::span(bytes).first(bytes.size() - 3), "ahci");
  AhciController::decode_state(truncated);
  EXPECT_FALSE(truncated.finish());
}

}  // namespace
}  // namespace hostvisor
