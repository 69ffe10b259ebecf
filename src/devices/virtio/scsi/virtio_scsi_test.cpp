// virtio-scsi with its CD-ROM through the virtqueue test driver: a READ(10)
// into a split chain, CHECK CONDITION with sense in the response, a LUN
// that is not there, an overrun, control requests, and chains that cannot
// be answered.
#include "devices/virtio/scsi/virtio_scsi.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "devices/cdrom/testing/memory_image.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {
namespace {

using namespace virtio_scsi;
using testing::RecordingVirtioInterrupt;
using testing::VirtqueueTestDriver;

constexpr uint64_t kRam = 1 << 20;
constexpr uint16_t kQueueSize = 16;
constexpr uint64_t kControlRing = 0x1000;
constexpr uint64_t kRequestRing = 0x4000;
constexpr uint64_t kHeader = 0x10000;    // request header + CDB
constexpr uint64_t kResponse = 0x11000;  // response + sense
constexpr uint64_t kData = 0x20000;      // data-in
constexpr uint32_t kSectors = 16;

class VirtioScsiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
    control = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kControlRing);
    requests = std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, kRequestRing);
    auto drive = MmcCdrom::create(std::make_shared<testing::MemoryImage>(testing::patterned_sectors(kSectors)));
    device = std::make_shared<VirtioScsiCdrom>(std::move(drive).value());
    const uint64_t features = device->device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
    queues[0] = std::move(Virtqueue::create(memory, control->layout(), features)).value();
    queues[2] = std::move(Virtqueue::create(memory, requests->layout(), features)).value();
    ASSERT_TRUE(device->activate(VirtioActivation{&memory, features, queues, enabled, &interrupt}).ok());
  }
  // Posts a command for `lun` with `cdb`, the response split across two
  // buffers (header, sense) and `data_in` bytes of data-in in two halves.
  void post(uint16_t head, std::vector<uint8_t> cdb, uint32_t data_in, std::array<uint8_t, 8> lun = {1, 0, 0, 0}) {
    std::vector<uint8_t> header(kCommandHeaderBytes + kDefaultCdbSize, 0);
    std::memcpy(header.data(), lun.data(), 8);
    std::memcpy(header.data() + kCommandHeaderBytes, cdb.data(), cdb.size());
    ASSERT_TRUE(memory.write(GuestAddress(kHeader), header).ok());
    std::vector<uint8_t> clear(0x30000, 0xee);
    ASSERT_TRUE(memory.write(GuestAddress(kResponse), std::span<const uint8_t>(clear.data(), 0x1000)).ok());
    ASSERT_TRUE(memory.write(GuestAddress(kData), clear).ok());
    std::vector<VirtqueueTestDriver::Buffer> buffers = {
        {kHeader, static_cast<uint32_t>(header.size()), false},
        {kResponse, kResponseHeaderBytes, true},
        {kResponse + 0x100, kDefaultSenseSize, true},
    };
    if (data_in > 0) {
      buffers.push_back({kData, data_in / 2, true});
      buffers.push_back({kData + data_in / 2, data_in - data_in / 2, true});
    }
    requests->add_chain(head, buffers);
  }
  uint8_t response() { return memory.read_obj<uint8_t>(GuestAddress(kResponse + 11)).value(); }
  uint8_t status() { return memory.read_obj<uint8_t>(GuestAddress(kResponse + 10)).value(); }
  uint32_t residual() { return memory.read_obj<uint32_t>(GuestAddress(kResponse + 4)).value(); }
  uint32_t sense_len() { return memory.read_obj<uint32_t>(GuestAddress(kResponse)).value(); }
  uint8_t sense(uint32_t at) { return memory.read_obj<uint8_t>(GuestAddress(kResponse + 0x100 + at)).value(); }
  uint8_t data(uint64_t at) { return memory.read_obj<uint8_t>(GuestAddress(kData + at)).value(); }

  GuestMemory memory;
  std::unique_ptr<VirtqueueTestDriver> control, requests;
  std::shared_ptr<VirtioScsiCdrom> device;
  Virtqueue queues[3];
  bool enabled[3] = {true, false, true};
  RecordingVirtioInterrupt interrupt;
};

TEST_F(VirtioScsiTest, Read10FillsTheDataInBuffersAfterTheResponse) {
  post(0, {mmc::kRead10, 0, 0, 0, 0, 2, 0, 0, 2, 0}, 6000);
  ASSERT_TRUE(device->process_queue(kRequestQueue).ok());
  ASSERT_EQ(requests->used_idx(), 1);
  EXPECT_EQ(response(), kResponseOk);
  EXPECT_EQ(status(), mmc::kStatusGood);
  EXPECT_EQ(sense_len(), 0u);
  EXPECT_EQ(residual(), 6000u - 4096u);
  EXPECT_EQ(data(0), 2 * 7);
  EXPECT_EQ(data(3000), static_cast<uint8_t>(3 * 7 + (3000 - 2048)));  // across the split
  EXPECT_EQ(data(4096), 0xee);
  EXPECT_EQ(requests->used(0).len, kResponseHeaderBytes + kDefaultSenseSize + 4096);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioScsiTest, ACheckConditionCarriesItsSenseInTheResponse) {
  post(0, {mmc::kRead10, 0, 0, 0, 0, kSectors, 0, 0, 1, 0}, 2048);
  ASSERT_TRUE(device->process_queue(kRequestQueue).ok());
  EXPECT_EQ(response(), kResponseOk);
  EXPECT_EQ(status(), mmc::kStatusCheckCondition);
  EXPECT_EQ(sense_len(), mmc::kSenseBytes);
  EXPECT_EQ(sense(2), mmc::kSenseIllegalRequest);
  EXPECT_EQ(sense(12), mmc::kAscLbaOutOfRange);
  EXPECT_EQ(residual(), 2048u);
}

TEST_F(VirtioScsiTest, OtherTargetsAndLunsAreBadTargetsAndShortBuffersOverruns) {
  post(0, {mmc::kInquiry, 0, 0, 0, 36, 0}, 64, {1, 1, 0, 0});
  ASSERT_TRUE(device->process_queue(kRequestQueue).ok());
  EXPECT_EQ(response(), kResponseBadTarget);
  post(6, {mmc::kInquiry, 0, 0, 0, 36, 0}, 64, {1, 0, 0x40, 1});
  ASSERT_TRUE(device->process_queue(kRequestQueue).ok());
  EXPECT_EQ(response(), kResponseBadTarget);
  post(12, {mmc::kRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}, 1000);
  ASSERT_TRUE(device->process_queue(kRequestQueue).ok());
  EXPECT_EQ(response(), kResponseOverrun);
  EXPECT_EQ(data(0), 0xee);
  EXPECT_EQ(requests->used_idx(), 3);
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioScsiTest, ControlRequestsAreAnswered) {
  // A TMF (abort task): nothing in flight, so complete.
  std::vector<uint8_t> tmf(kTmfRequestBytes, 0);
  tmf[8] = 1;
  ASSERT_TRUE(memory.write(GuestAddress(kHeader), tmf).ok());
  ASSERT_TRUE(memory.write_obj<uint8_t>(GuestAddress(kResponse), 0xee).ok());
  control->add_chain(0, {{kHeader, kTmfRequestBytes, false}, {kResponse, 1, true}});
  // An AN query: event_actual 0, OK.
  std::vector<uint8_t> an(kAnRequestBytes, 0);
  an[0] = kControlAnQuery;
  ASSERT_TRUE(memory.write(GuestAddress(kHeader + 0x100), an).ok());
  control->add_chain(4, {{kHeader + 0x100, kAnRequestBytes, false}, {kResponse + 0x100, kAnResponseBytes, true}});
  // An unknown type: rejected.
  ASSERT_TRUE(memory.write_obj<uint32_t>(GuestAddress(kHeader + 0x200), 77).ok());
  control->add_chain(8, {{kHeader + 0x200, 4, false}, {kResponse + 0x200, 1, true}});
  ASSERT_TRUE(device->process_queue(kControlQueue).ok());
  ASSERT_EQ(control->used_idx(), 3);
  EXPECT_EQ(memory.read_obj<uint8_t>(GuestAddress(kResponse)).value(), kResponseFunctionComplete);
  EXPECT_EQ(memory.read_obj<uint8_t>(GuestAddress(kResponse + 0x104)).value(), kResponseOk);
  EXPECT_EQ(memory.read_obj<uint8_t>(GuestAddress(kResponse + 0x200)).value(), kResponseFunctionRejected);
}

TEST_F(VirtioScsiTest, AChainWithoutRoomForTheResponseNeedsAReset) {
  requests->add_chain(0, {{kHeader, kCommandHeaderBytes + kDefaultCdbSize, false}, {kResponse, 4, true}});
  ASSERT_TRUE(device->process_queue(kRequestQueue).ok());
  ASSERT_EQ(interrupt.needs_reset.size(), 1u);
  EXPECT_NE(interrupt.needs_reset[0].find("too few for the response"), std::string::npos);
}

TEST_F(VirtioScsiTest, ConfigSaysOneLunAndKeepsTheDriversSizes) {
  Config c{};
  device->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c));
  EXPECT_EQ(c.num_queues, 1u);
  EXPECT_EQ(c.max_target, 0);
  EXPECT_EQ(c.max_lun, 0u);
  EXPECT_EQ(c.cdb_size, kDefaultCdbSize);
  const uint32_t small = 16, huge = 1 << 20;
  device->write_config(kConfigCdbSizeOffset, std::span(reinterpret_cast<const uint8_t*>(&small), 4));
  device->write_config(kConfigSenseSizeOffset, std::span(reinterpret_cast<const uint8_t*>(&huge), 4));
  device->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c));
  EXPECT_EQ(c.cdb_size, 16u);
  EXPECT_EQ(c.sense_size, kDefaultSenseSize);
}

}  // namespace
}  // namespace hostvisor
