// The MMC CD-ROM drive on its own: each command's answer, the bounds on
// every CDB field and transfer, and the sense a failed command leaves.
#include "devices/cdrom/mmc_cdrom.h"

#include <gtest/gtest.h>

#include <vector>

#include "devices/cdrom/testing/memory_image.h"

namespace hostvisor {
namespace {

using namespace mmc;

class MmcCdromTest : public ::testing::Test {
 protected:
  void SetUp() override {
    drive = std::move(MmcCdrom::create(std::make_shared<testing::MemoryImage>(testing::patterned_sectors(kSectors))))
                .value();
  }
  // Runs `cdb` with `room` bytes of data-in space; the data lands in `data`.
  MmcCdrom::Outcome run(std::vector<uint8_t> cdb, uint64_t room = 1 << 20) {
    cdb.resize(std::max<size_t>(cdb.size(), 16), 0);
    data.assign(room, 0xee);
    return drive->execute(cdb, room, [this](uint64_t offset, std::span<const uint8_t> bytes) {
      if (offset + bytes.size() > data.size()) return false;
      std::copy(bytes.begin(), bytes.end(), data.begin() + offset);
      return true;
    });
  }
  static constexpr uint32_t kSectors = 40;
  std::unique_ptr<MmcCdrom> drive;
  std::vector<uint8_t> data;
};

TEST_F(MmcCdromTest, InquirySaysARemovableCdDrive) {
  auto out = run({kInquiry, 0, 0, 0, 36, 0});
  ASSERT_EQ(out.status, kStatusGood);
  EXPECT_EQ(out.transferred, 36u);
  EXPECT_EQ(data[0], 0x05);
  EXPECT_EQ(data[1], 0x80);
  EXPECT_EQ(std::string(data.begin() + 8, data.begin() + 16), "HOSTVISR");
  // The allocation length cuts the answer.
  EXPECT_EQ(run({kInquiry, 0, 0, 0, 5, 0}).transferred, 5u);
}

TEST_F(MmcCdromTest, ReadCapacityGivesTheLastSectorAnd2048ByteBlocks) {
  auto out = run({kReadCapacity10});
  ASSERT_EQ(out.status, kStatusGood);
  ASSERT_EQ(out.transferred, 8u);
  EXPECT_EQ((std::vector<uint8_t>(data.begin(), data.begin() + 8)),
            (std::vector<uint8_t>{0, 0, 0, kSectors - 1, 0, 0, 0x08, 0}));
}

TEST_F(MmcCdromTest, Read10AndRead12ReturnTheImagesSectors) {
  auto out = run({kRead10, 0, 0, 0, 0, 3, 0, 0, 2, 0});
  ASSERT_EQ(out.status, kStatusGood);
  ASSERT_EQ(out.transferred, 4096u);
  EXPECT_EQ(data[0], static_cast<uint8_t>(3 * 7));
  EXPECT_EQ(data[2048 + 5], static_cast<uint8_t>(4 * 7 + 5));
  out = run({kRead12, 0, 0, 0, 0, kSectors - 1, 0, 0, 0, 1, 0, 0});
  ASSERT_EQ(out.status, kStatusGood);
  EXPECT_EQ(data[1], static_cast<uint8_t>((kSectors - 1) * 7 + 1));
}

TEST_F(MmcCdromTest, ReadsPastTheEndAreLbaOutOfRangeAndLeaveThatSense) {
  // Ends one sector past the end; a huge LBA + length must not wrap.
  auto out = run({kRead10, 0, 0, 0, 0, kSectors - 1, 0, 0, 2, 0});
  EXPECT_EQ(out.status, kStatusCheckCondition);
  EXPECT_EQ(out.sense.key, kSenseIllegalRequest);
  EXPECT_EQ(out.sense.asc, kAscLbaOutOfRange);
  EXPECT_EQ(out.transferred, 0u);
  out = run({kRead12, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0});
  EXPECT_EQ(out.sense.asc, kAscLbaOutOfRange);
  // REQUEST SENSE reports it once, then no sense.
  out = run({kRequestSense, 0, 0, 0, 18, 0});
  ASSERT_EQ(out.status, kStatusGood);
  EXPECT_EQ(data[0], 0x70);
  EXPECT_EQ(data[2], kSenseIllegalRequest);
  EXPECT_EQ(data[12], kAscLbaOutOfRange);
  run({kRequestSense, 0, 0, 0, 18, 0});
  EXPECT_EQ(data[2], kSenseNone);
}

TEST_F(MmcCdromTest, AReadLargerThanTheGuestsBufferIsAnOverrunAndSendsNothing) {
  auto out = run({kRead10, 0, 0, 0, 0, 0, 0, 0, 2, 0}, 4095);
  EXPECT_TRUE(out.overrun);
  EXPECT_EQ(out.transferred, 0u);
  EXPECT_EQ(data[0], 0xee);
}

TEST_F(MmcCdromTest, UnknownOpcodesAndShortCdbsAreIllegalRequests) {
  auto out = run({0x2a /* WRITE(10) */});
  EXPECT_EQ(out.status, kStatusCheckCondition);
  EXPECT_EQ(out.sense.key, kSenseIllegalRequest);
  EXPECT_EQ(out.sense.asc, kAscInvalidOpcode);
  std::vector<uint8_t> short_read = {kRead10, 0, 0, 0};
  out = drive->execute(short_read, 4096, [](uint64_t, std::span<const uint8_t>) { return true; });
  EXPECT_EQ(out.sense.asc, kAscInvalidFieldInCdb);
  out = drive->execute({}, 4096, [](uint64_t, std::span<const uint8_t>) { return true; });
  EXPECT_EQ(out.status, kStatusCheckCondition);
}

TEST_F(MmcCdromTest, ReadTocListsTrackOneAndTheLeadOut) {
  auto out = run({kReadToc, 0, 0, 0, 0, 0, 0, 0x03, 0x24, 0});
  ASSERT_EQ(out.status, kStatusGood);
  ASSERT_EQ(out.transferred, 20u);
  EXPECT_EQ(data[1], 18);     // data length
  EXPECT_EQ(data[6], 1);      // track 1
  EXPECT_EQ(data[14], 0xaa);  // the lead-out
  EXPECT_EQ(data[19], kSectors);
  // MSF: the lead-out of 40 sectors is at 00:02:40.
  run({kReadToc, 0x02, 0, 0, 0, 0, 0, 0x03, 0x24, 0});
  EXPECT_EQ(data[17], 0);
  EXPECT_EQ(data[18], 2);
  EXPECT_EQ(data[19], 40);
  EXPECT_EQ(run({kReadToc, 0, 0, 0, 0, 0, 2, 0, 0x24, 0}).sense.asc, kAscInvalidFieldInCdb);
  EXPECT_EQ(run({kReadToc, 0, 5, 0, 0, 0, 0, 0, 0x24, 0}).sense.asc, kAscInvalidFieldInCdb);
}

TEST_F(MmcCdromTest, ModeSenseGivesTheCapabilitiesPageOnly) {
  auto out = run({kModeSense10, 0, 0x2a, 0, 0, 0, 0, 0, 0xff, 0});
  ASSERT_EQ(out.status, kStatusGood);
  ASSERT_EQ(out.transferred, 30u);
  EXPECT_EQ(data[1], 28);
  EXPECT_EQ(data[8], 0x2a);
  out = run({kModeSense6, 0, 0x3f, 0, 0xff, 0});
  ASSERT_EQ(out.transferred, 26u);
  EXPECT_EQ(data[0], 25);
  EXPECT_EQ(data[4], 0x2a);
  EXPECT_EQ(run({kModeSense6, 0, 0x08, 0, 0xff, 0}).sense.asc, kAscInvalidFieldInCdb);
  EXPECT_EQ(run({kModeSense6, 0, 0xea, 0, 0xff, 0}).sense.asc, kAscSavingNotSupported);
}

TEST_F(MmcCdromTest, ConfigurationEventsAndMediumLock) {
  auto out = run({kGetConfiguration, 0, 0, 0, 0, 0, 0, 0x01, 0, 0});
  ASSERT_EQ(out.status, kStatusGood);
  EXPECT_EQ(data[7], 0x08);  // current profile: CD-ROM
  EXPECT_EQ(data[11], 4);    // the profile list's length
  out = run({kGetEventStatusNotification, 1, 0, 0, 0x10, 0, 0, 0, 8, 0});
  ASSERT_EQ(out.status, kStatusGood);
  ASSERT_EQ(out.transferred, 8u);
  EXPECT_EQ(data[2], 4);     // media class
  EXPECT_EQ(data[5], 0x02);  // medium present
  EXPECT_EQ(run({kGetEventStatusNotification, 0, 0, 0, 0x10, 0, 0, 0, 8, 0}).sense.asc, kAscInvalidFieldInCdb);
  EXPECT_EQ(run({kPreventAllowMediumRemoval, 0, 0, 0, 1, 0}).status, kStatusGood);
  EXPECT_TRUE(drive->removal_prevented());
  run({kPreventAllowMediumRemoval, 0, 0, 0, 0, 0});
  EXPECT_FALSE(drive->removal_prevented());
  EXPECT_EQ(run({kStartStopUnit, 0, 0, 0, 1, 0}).status, kStatusGood);
  EXPECT_EQ(run({kTestUnitReady}).status, kStatusGood);
}

TEST_F(MmcCdromTest, StateRoundTripsAndRejectsABadSenseKey) {
  run({kPreventAllowMediumRemoval, 0, 0, 0, 1, 0});
  run({kRead10, 0, 0xff, 0, 0, 0, 0, 0, 1, 0});
  StateWriter out;
  MmcCdrom::encode_state(out, drive->save());
  StateReader in(out.bytes(), "cdrom");
  const MmcCdrom::State state = MmcCdrom::decode_state(in);
  ASSERT_TRUE(in.finish().ok());
  EXPECT_EQ(state.sense.asc, kAscLbaOutOfRange);
  EXPECT_TRUE(state.removal_prevented);
  std::vector<uint8_t> bad = out.bytes();
  bad[0] = 0x42;
  StateReader bad_in(bad, "cdrom");
  MmcCdrom::decode_state(bad_in);
  EXPECT_FALSE(bad_in.finish().ok());
}

TEST(MmcCdrom, AnImageSmallerThanOneSectorIsRefused) {
  auto drive = MmcCdrom::create(std::make_shared<testing::MemoryImage>(std::vector<uint8_t>(2047)));
  ASSERT_FALSE(drive.ok());
  EXPECT_NE(drive.error().message().find("2048"), std::string::npos);
}

}  // namespace
}  // namespace hostvisor
