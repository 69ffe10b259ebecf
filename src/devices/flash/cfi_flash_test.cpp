#include "devices/flash/cfi_flash.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "devices/testing/state_bytes.h"

namespace hostvisor {
namespace {

constexpr uint64_t kBlock = 4096;

std::vector<uint8_t> pattern(size_t size) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 3);
  return bytes;
}

std::shared_ptr<CfiFlash> make_flash(std::vector<uint8_t> contents, bool read_only = false, UniqueFd backing = {}) {
  auto flash = CfiFlash::create(std::move(contents), kBlock, std::move(backing), read_only);
  EXPECT_TRUE(flash.ok()) << flash.error().message();
  return flash.ok() ? *flash : nullptr;
}

uint8_t read8(CfiFlash& flash, uint64_t offset) {
  uint8_t b = 0;
  flash.read(offset, std::span(&b, 1));
  return b;
}
void write8(CfiFlash& flash, uint64_t offset, uint8_t value) { flash.write(offset, std::span(&value, 1)); }

TEST(CfiFlash, ReadsTheArrayAtPowerOn) {
  auto flash = make_flash(pattern(2 * kBlock));
  uint8_t bytes[8];
  flash->read(kBlock + 5, bytes);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(bytes[i], static_cast<uint8_t>((kBlock + 5 + i) * 7 + 3));
  flash->read(2 * kBlock - 2, bytes);
  EXPECT_EQ(bytes[2], 0xff) << "past the bank's end";
}

// OVMF's QemuFlashDetected, step by step: 0x50 must not read back (RAM),
// the status after it must be 0 (not the data: ROM), and a program of the
// same byte must not fail (write-protected).
TEST(CfiFlash, PassesOvmfsFlashProbe) {
  auto flash = make_flash(pattern(kBlock));
  const uint64_t probe = 0x10;
  const uint8_t original = read8(*flash, probe);
  write8(*flash, probe, cfi::kClearStatus);
  EXPECT_NE(read8(*flash, probe), cfi::kClearStatus);
  write8(*flash, probe, cfi::kReadStatus);
  EXPECT_EQ(read8(*flash, probe), 0x00);
  write8(*flash, probe, cfi::kProgram);
  write8(*flash, probe, original);
  write8(*flash, probe, cfi::kReadStatus);
  EXPECT_EQ(read8(*flash, probe) & cfi::kStatusProgramError, 0);
  write8(*flash, probe, cfi::kReadArray);
  EXPECT_EQ(read8(*flash, probe), original);
}

TEST(CfiFlash, ProgramClearsBitsAndEraseSetsTheWholeBlock) {
  auto flash = make_flash(std::vector<uint8_t>(2 * kBlock, 0xff));
  write8(*flash, 100, cfi::kProgram);
  write8(*flash, 100, 0x5a);
  EXPECT_EQ(read8(*flash, 100), cfi::kStatusReady) << "after a program the bank reads its status";
  write8(*flash, 100, cfi::kReadArray);
  EXPECT_EQ(read8(*flash, 100), 0x5a);
  // Programming can only clear bits.
  write8(*flash, 100, cfi::kProgramAlternate);
  write8(*flash, 100, 0xf0);
  write8(*flash, 100, cfi::kReadArray);
  EXPECT_EQ(read8(*flash, 100), 0x50);
  // A wider access programs every byte of it.
  write8(*flash, kBlock + 8, cfi::kProgram);
  const uint8_t word[4] = {1, 2, 3, 4};
  flash->write(kBlock + 8, word);
  write8(*flash, 0, cfi::kReadArray);
  EXPECT_EQ(read8(*flash, kBlock + 11), 4);
  // Erase the first block: its bytes are 0xFF again, the second block's stay.
  write8(*flash, 10, cfi::kBlockErase);
  write8(*flash, 20, cfi::kEraseConfirm);
  write8(*flash, 0, cfi::kReadStatus);
  EXPECT_EQ(read8(*flash, 0), cfi::kStatusReady);
  write8(*flash, 0, cfi::kReadArray);
  EXPECT_EQ(read8(*flash, 100), 0xff);
  EXPECT_EQ(read8(*flash, kBlock + 9), 2);
}

TEST(CfiFlash, AnEraseWithoutItsConfirmationIsASequenceError) {
  auto flash = make_flash(std::vector<uint8_t>(kBlock, 0x00));
  write8(*flash, 0, cfi::kBlockErase);
  write8(*flash, 0, cfi::kReadArray);
  const uint8_t status = read8(*flash, 0);
  EXPECT_EQ(status & (cfi::kStatusEraseError | cfi::kStatusProgramError),
            cfi::kStatusEraseError | cfi::kStatusProgramError);
  write8(*flash, 0, cfi::kClearStatus);
  EXPECT_EQ(read8(*flash, 0), 0x00) << "the array, untouched";
  write8(*flash, 0, cfi::kReadStatus);
  EXPECT_EQ(read8(*flash, 0), 0x00) << "cleared";
}

TEST(CfiFlash, AReadOnlyBankRefusesProgramsAndErases) {
  auto flash = make_flash(pattern(kBlock), /*read_only=*/true);
  write8(*flash, 3, cfi::kProgram);
  write8(*flash, 3, 0x00);
  EXPECT_NE(read8(*flash, 3) & cfi::kStatusProgramError, 0);
  write8(*flash, 3, cfi::kClearStatus);
  write8(*flash, 3, cfi::kBlockErase);
  write8(*flash, 3, cfi::kEraseConfirm);
  EXPECT_NE(read8(*flash, 3) & cfi::kStatusEraseError, 0);
  write8(*flash, 3, cfi::kReadArray);
  EXPECT_EQ(flash->contents(), pattern(kBlock));
}

TEST(CfiFlash, ProgramsPastTheEndFailWithoutTouchingAnything) {
  auto flash = make_flash(std::vector<uint8_t>(kBlock, 0xff));
  write8(*flash, kBlock - 2, cfi::kProgram);
  const uint8_t wide[8] = {};
  flash->write(kBlock - 2, wide);
  EXPECT_NE(read8(*flash, 0) & cfi::kStatusProgramError, 0);
  write8(*flash, 0, cfi::kBlockErase);
  write8(*flash, kBlock * 100, cfi::kEraseConfirm);
  EXPECT_NE(read8(*flash, 0) & cfi::kStatusEraseError, 0);
  EXPECT_EQ(flash->contents(), std::vector<uint8_t>(kBlock, 0xff));
}

TEST(CfiFlash, AnswersTheCfiQueryAndIdentifier) {
  auto flash = make_flash(std::vector<uint8_t>(132 * kBlock, 0xff));  // OVMF_VARS_4M's 528 KiB
  write8(*flash, 0, cfi::kQuery);
  EXPECT_EQ(read8(*flash, 0x10), 'Q');
  EXPECT_EQ(read8(*flash, 0x11), 'R');
  EXPECT_EQ(read8(*flash, 0x12), 'Y');
  EXPECT_EQ(read8(*flash, 0x13), 0x01) << "Intel/Sharp command set";
  EXPECT_EQ(read8(*flash, 0x27), 20) << "1 MiB holds 528 KiB";
  EXPECT_EQ(read8(*flash, 0x2c), 1);
  EXPECT_EQ(read8(*flash, 0x2d) | read8(*flash, 0x2e) << 8, 131);
  EXPECT_EQ((read8(*flash, 0x2f) | read8(*flash, 0x30) << 8) * 256, kBlock);
  write8(*flash, 0, cfi::kReadIdentifier);
  EXPECT_EQ(read8(*flash, 0), cfi::kManufacturerIntel);
  EXPECT_EQ(read8(*flash, 1), cfi::kDeviceId);
  write8(*flash, 0, cfi::kReadArray);
  EXPECT_EQ(read8(*flash, 0x10), 0xff);
}

TEST(CfiFlash, WritesReachTheBackingFile) {
  char path[] = "/tmp/cfi-flash-test-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::unlink(path);
  std::vector<uint8_t> initial(2 * kBlock, 0xff);
  ASSERT_EQ(::pwrite(fd, initial.data(), initial.size(), 0), static_cast<ssize_t>(initial.size()));
  auto flash = make_flash(initial, false, UniqueFd(::dup(fd)));
  write8(*flash, kBlock + 1, cfi::kProgram);
  write8(*flash, kBlock + 1, 0x42);
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, kBlock + 1), 1);
  EXPECT_EQ(b, 0x42);
  write8(*flash, kBlock, cfi::kBlockErase);
  write8(*flash, kBlock, cfi::kEraseConfirm);
  ASSERT_EQ(::pread(fd, &b, 1, kBlock + 1), 1);
  EXPECT_EQ(b, 0xff);
  ::close(fd);
}

TEST(CfiFlash, RefusesBanksThatAreNotWholeBlocks) {
  EXPECT_FALSE(CfiFlash::create(std::vector<uint8_t>(kBlock + 1), kBlock, {}, false).ok());
  EXPECT_FALSE(CfiFlash::create({}, kBlock, {}, false).ok());
  EXPECT_FALSE(CfiFlash::create(std::vector<uint8_t>(3000), 3000, {}, false).ok());
}

TEST(CfiFlash, StateRoundTripsTheCommandMode) {
  auto flash = make_flash(pattern(kBlock));
  write8(*flash, 0, cfi::kProgram);
  write8(*flash, 0, 0x00);  // status: ready, mode: read status
  auto copy = make_flash(pattern(kBlock));
  ASSERT_TRUE(copy->restore(testing::through_state_bytes<CfiFlash>(flash->save())).ok());
  EXPECT_EQ(read8(*copy, 0), cfi::kStatusReady);
  CfiFlash::State bad;
  bad.mode = static_cast<CfiFlash::Mode>(9);
  EXPECT_FALSE(copy->restore(bad).ok());
}

}  // namespace
}  // namespace hostvisor
