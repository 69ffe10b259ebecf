// Register layout and data structures of an AHCI 1.3.1 host bus adapter
// (Serial ATA AHCI 1.3.1 specification, chapters 3 and 4) and the ATA/ATAPI
// bits it carries (ATA8-ACS, ATA8-AST for the FIS layouts). Only constants:
// the controller (ahci_controller.h) and the command parser
// (ahci_command.h) give them meaning.
#pragma once

#include <cstdint>

namespace hostvisor::ahci {

// --- PCI identity: Intel ICH9's SATA controller in AHCI mode (82801IR,
// 8086:2922), class 01 (mass storage), 06 (SATA), 01 (AHCI 1.0), ABAR in BAR 5.
inline constexpr uint16_t kVendorId = 0x8086;
inline constexpr uint16_t kDeviceId = 0x2922;
inline constexpr uint32_t kClassCode = 0x010601;
inline constexpr int kAbarIndex = 5;
inline constexpr uint64_t kAbarSize = 0x1000;

// --- Generic host control (3.1).
inline constexpr uint32_t kCap = 0x00;
inline constexpr uint32_t kGhc = 0x04;
inline constexpr uint32_t kIs = 0x08;
inline constexpr uint32_t kPi = 0x0c;
inline constexpr uint32_t kVs = 0x10;
inline constexpr uint32_t kCccCtl = 0x14;
inline constexpr uint32_t kCccPorts = 0x18;
inline constexpr uint32_t kEmLoc = 0x1c;
inline constexpr uint32_t kEmCtl = 0x20;
inline constexpr uint32_t kCap2 = 0x24;
inline constexpr uint32_t kBohc = 0x28;

inline constexpr uint32_t kCapS64a = 1u << 31;     // 64-bit addressing
inline constexpr uint32_t kCapSam = 1u << 18;      // AHCI mode only
inline constexpr uint32_t kCapIssGen1 = 1u << 20;  // interface speed: Gen 1 (1.5 Gb/s)
inline constexpr uint32_t kCapNcsShift = 8;        // number of command slots - 1
inline constexpr uint32_t kVersion13 = 0x00010300;

inline constexpr uint32_t kGhcHr = 1u << 0;   // HBA reset
inline constexpr uint32_t kGhcIe = 1u << 1;   // interrupt enable
inline constexpr uint32_t kGhcAe = 1u << 31;  // AHCI enable

// --- Port registers (3.3): at 0x100 + port * 0x80.
inline constexpr uint32_t kPortBase = 0x100;
inline constexpr uint32_t kPortStride = 0x80;
inline constexpr uint32_t kPxClb = 0x00;
inline constexpr uint32_t kPxClbu = 0x04;
inline constexpr uint32_t kPxFb = 0x08;
inline constexpr uint32_t kPxFbu = 0x0c;
inline constexpr uint32_t kPxIs = 0x10;
inline constexpr uint32_t kPxIe = 0x14;
inline constexpr uint32_t kPxCmd = 0x18;
inline constexpr uint32_t kPxTfd = 0x20;
inline constexpr uint32_t kPxSig = 0x24;
inline constexpr uint32_t kPxSsts = 0x28;
inline constexpr uint32_t kPxSctl = 0x2c;
inline constexpr uint32_t kPxSerr = 0x30;
inline constexpr uint32_t kPxSact = 0x34;
inline constexpr uint32_t kPxCi = 0x38;
inline constexpr uint32_t kPxSntf = 0x3c;
inline constexpr uint32_t kPxFbs = 0x40;

// PxIS / PxIE bits.
inline constexpr uint32_t kIsDhrs = 1u << 0;                 // D2H register FIS received
inline constexpr uint32_t kIsPss = 1u << 1;                  // PIO setup FIS received
inline constexpr uint32_t kIsHbfs = 1u << 29;                // host bus fatal error
inline constexpr uint32_t kIsTfes = 1u << 30;                // task file error
inline constexpr uint32_t kIsWriteOneToClear = 0xfdc000ffu;  // the RWC bits (PRCS/PCS are mirrors)
inline constexpr uint32_t kIeWritable = 0xfdc000ffu;

// PxCMD bits.
inline constexpr uint32_t kCmdSt = 1u << 0;      // start
inline constexpr uint32_t kCmdSud = 1u << 1;     // spin-up device (reads 1: no staggered spin-up)
inline constexpr uint32_t kCmdPod = 1u << 2;     // power on device (reads 1: no cold presence detect)
inline constexpr uint32_t kCmdClo = 1u << 3;     // command list override
inline constexpr uint32_t kCmdFre = 1u << 4;     // FIS receive enable
inline constexpr uint32_t kCmdCcsShift = 8;      // current command slot
inline constexpr uint32_t kCmdFr = 1u << 14;     // FIS receive running
inline constexpr uint32_t kCmdCr = 1u << 15;     // command list running
inline constexpr uint32_t kCmdAtapi = 1u << 24;  // device is ATAPI (LED hint, software-set)
inline constexpr uint32_t kCmdIccShift = 28;     // interface communication control
inline constexpr uint32_t kCmdWritable =
    kCmdSt | kCmdFre | kCmdAtapi | (1u << 25) | (1u << 26) | (1u << 27) | 0xf0000000u;

// PxSSTS: device present, communication established (DET 3), Gen 1 (SPD 1), active (IPM 1).
inline constexpr uint32_t kSstsLinkUp = 0x113;
inline constexpr uint32_t kSctlDetMask = 0xf;
inline constexpr uint32_t kSctlDetComreset = 0x1;

// The signature an ATAPI device reports in its first D2H FIS (PxSIG:
// LBA high, LBA mid, LBA low, sector count).
inline constexpr uint32_t kSignatureAtapi = 0xeb140101;

// --- Memory structures (4.2).
inline constexpr uint64_t kCommandHeaderBytes = 32;
inline constexpr unsigned kCommandSlots = 32;
inline constexpr uint64_t kCommandListAlign = 1024;
inline constexpr uint64_t kFisAreaAlign = 256;
inline constexpr uint64_t kFisAreaBytes = 256;
// Offsets in the received-FIS area.
inline constexpr uint64_t kRfisPioSetup = 0x20;
inline constexpr uint64_t kRfisD2h = 0x40;

// Command header DW0.
inline constexpr uint32_t kHeaderCflMask = 0x1f;   // command FIS length in dwords
inline constexpr uint32_t kHeaderAtapi = 1u << 5;  // the ACMD holds a packet
inline constexpr uint32_t kHeaderWrite = 1u << 6;  // data goes to the device
inline constexpr uint32_t kHeaderReset = 1u << 8;
inline constexpr uint32_t kHeaderPrdtlShift = 16;
// Command table: the command FIS, the ATAPI command, the PRDT.
inline constexpr uint64_t kTableCfis = 0x00;
inline constexpr uint64_t kTableCfisBytes = 64;
inline constexpr uint64_t kTableAcmd = 0x40;
inline constexpr uint64_t kTableAcmdBytes = 16;
inline constexpr uint64_t kTablePrdt = 0x80;
inline constexpr uint64_t kTableAlign = 128;
inline constexpr uint64_t kPrdBytes = 16;
// PRD DW3: byte count - 1 in bits 21:0 (at most 4 MiB), interrupt on completion in bit 31.
inline constexpr uint32_t kPrdDbcMask = 0x3fffff;
inline constexpr uint32_t kPrdInterrupt = 1u << 31;

// --- FIS types (SATA 3.x, 10.5).
inline constexpr uint8_t kFisRegH2d = 0x27;
inline constexpr uint8_t kFisRegD2h = 0x34;
inline constexpr uint8_t kFisPioSetup = 0x5f;
inline constexpr uint8_t kFisH2dCommandBit = 0x80;    // byte 1: C, command (else a device control update)
inline constexpr uint8_t kFisInterruptBit = 0x40;     // byte 1 of a D2H / PIO setup FIS: I
inline constexpr uint8_t kFisDirectionToHost = 0x20;  // byte 1 of a PIO setup FIS: D
inline constexpr uint8_t kControlSrst = 0x04;         // device control: software reset

// --- ATA status and error bits.
inline constexpr uint8_t kStatusErr = 0x01;  // ERR, CHK for packet commands
inline constexpr uint8_t kStatusDrq = 0x08;
inline constexpr uint8_t kStatusDsc = 0x10;
inline constexpr uint8_t kStatusDrdy = 0x40;
inline constexpr uint8_t kStatusBsy = 0x80;
inline constexpr uint8_t kErrorAbrt = 0x04;

// --- ATA commands an ATAPI device takes.
inline constexpr uint8_t kAtaDeviceReset = 0x08;
inline constexpr uint8_t kAtaExecuteDiagnostic = 0x90;
inline constexpr uint8_t kAtaPacket = 0xa0;
inline constexpr uint8_t kAtaIdentifyPacketDevice = 0xa1;
inline constexpr uint8_t kAtaIdentifyDevice = 0xec;
inline constexpr uint8_t kAtaSetFeatures = 0xef;
inline constexpr uint8_t kAtaCheckPowerMode = 0xe5;
inline constexpr uint8_t kAtaIdle = 0xe3;
inline constexpr uint8_t kAtaIdleImmediate = 0xe1;
inline constexpr uint8_t kAtaStandbyImmediate = 0xe0;
inline constexpr uint8_t kAtaSleep = 0xe6;
inline constexpr uint8_t kAtaNop = 0x00;

}  // namespace hostvisor::ahci
