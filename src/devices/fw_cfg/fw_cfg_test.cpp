#include "devices/fw_cfg/fw_cfg.h"

#include <gtest/gtest.h>

#include <string>

namespace hostvisor {
namespace {

constexpr uint64_t kRamSize = 1 << 20;

class FwCfgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto memory = GuestMemory::create({{GuestAddress(0), kRamSize}});
    ASSERT_TRUE(memory.ok()) << memory.error().message();
    memory_ = std::move(*memory);
    device_ = std::make_unique<FwCfg>(memory_);
  }

  void select(uint16_t key) {
    const uint8_t bytes[2] = {static_cast<uint8_t>(key), static_cast<uint8_t>(key >> 8)};
    device_->write(fw_cfg::kSelectorOffset, bytes);
  }
  std::vector<uint8_t> read_data(size_t n) {
    std::vector<uint8_t> out(n);
    for (auto& b : out) device_->read(fw_cfg::kDataOffset, std::span(&b, 1));
    return out;
  }
  static void put_be32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
  }
  static uint32_t get_be32(const uint8_t* p) { return uint32_t{p[0]} << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
  // Writes a descriptor at `at` and starts it the way SeaBIOS does: two
  // 32-bit big-endian halves, the low one last.
  void dma(uint64_t at, uint32_t control, uint32_t length, uint64_t buffer) {
    uint8_t d[16];
    put_be32(d, control);
    put_be32(d + 4, length);
    put_be32(d + 8, static_cast<uint32_t>(buffer >> 32));
    put_be32(d + 12, static_cast<uint32_t>(buffer));
    ASSERT_TRUE(memory_.write(GuestAddress(at), d).ok());
    start_dma(at);
  }
  void start_dma(uint64_t at) {
    uint8_t high[4], low[4];
    put_be32(high, static_cast<uint32_t>(at >> 32));
    put_be32(low, static_cast<uint32_t>(at));
    device_->write(fw_cfg::kDmaOffset, high);
    device_->write(fw_cfg::kDmaOffset + 4, low);
  }
  uint32_t control_at(uint64_t at) {
    uint8_t c[4];
    EXPECT_TRUE(memory_.read(GuestAddress(at), c).ok());
    return get_be32(c);
  }
  std::vector<uint8_t> ram(uint64_t at, size_t n) {
    std::vector<uint8_t> out(n);
    EXPECT_TRUE(memory_.read(GuestAddress(at), out).ok());
    return out;
  }

  GuestMemory memory_;
  std::unique_ptr<FwCfg> device_;
};

TEST_F(FwCfgTest, SignatureAndIdThroughThePorts) {
  select(fw_cfg::kSignature);
  EXPECT_EQ(read_data(4), (std::vector<uint8_t>{'Q', 'E', 'M', 'U'}));
  EXPECT_EQ(read_data(2), (std::vector<uint8_t>{0, 0})) << "past the end reads zeros";
  select(fw_cfg::kId);
  EXPECT_EQ(read_data(4), (std::vector<uint8_t>{3, 0, 0, 0})) << "traditional interface and DMA";
}

TEST_F(FwCfgTest, SelectingAgainRestartsTheItem) {
  select(fw_cfg::kSignature);
  read_data(2);
  select(fw_cfg::kSignature);
  EXPECT_EQ(read_data(1), (std::vector<uint8_t>{'Q'}));
}

TEST_F(FwCfgTest, UnknownSelectorReadsZeros) {
  select(0x1234);
  EXPECT_EQ(read_data(3), (std::vector<uint8_t>{0, 0, 0}));
}

TEST_F(FwCfgTest, WriteChannelBitSelectsTheSameItem) {
  select(fw_cfg::kSignature | fw_cfg::kWriteChannel);
  EXPECT_EQ(read_data(4), (std::vector<uint8_t>{'Q', 'E', 'M', 'U'}));
}

TEST_F(FwCfgTest, DataPortWritesAreIgnored) {
  select(fw_cfg::kSignature);
  const uint8_t x = 'X';
  device_->write(fw_cfg::kDataOffset, std::span(&x, 1));
  select(fw_cfg::kSignature);
  EXPECT_EQ(read_data(4), (std::vector<uint8_t>{'Q', 'E', 'M', 'U'}));
}

TEST_F(FwCfgTest, DmaRegisterReadsItsSignature) {
  uint8_t bytes[8];
  device_->read(fw_cfg::kDmaOffset, std::span(bytes, 4));
  device_->read(fw_cfg::kDmaOffset + 4, std::span(bytes + 4, 4));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(bytes), 8), "QEMU CFG");
}

TEST_F(FwCfgTest, FileDirectoryIsSortedBigEndian) {
  auto b = device_->add_file("opt/b", {1, 2, 3});
  auto a = device_->add_file("etc/a", std::vector<uint8_t>(300, 7));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_GE(*b, fw_cfg::kFileFirst);
  EXPECT_NE(*a, *b);
  select(fw_cfg::kFileDir);
  const auto count = read_data(4);
  EXPECT_EQ(get_be32(count.data()), 2u);
  const auto first = read_data(fw_cfg::kFileEntrySize);
  EXPECT_EQ(get_be32(first.data()), 300u);
  EXPECT_EQ(first[4] << 8 | first[5], *a);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(first.data() + 8)), "etc/a");
  const auto second = read_data(fw_cfg::kFileEntrySize);
  EXPECT_EQ(get_be32(second.data()), 3u);
  EXPECT_EQ(second[4] << 8 | second[5], *b);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(second.data() + 8)), "opt/b");
  select(*b);
  EXPECT_EQ(read_data(3), (std::vector<uint8_t>{1, 2, 3}));
}

TEST_F(FwCfgTest, BadFileNamesAndDuplicatesAreRefused) {
  EXPECT_FALSE(device_->add_file("", {}).ok());
  EXPECT_FALSE(device_->add_file(std::string(56, 'x'), {}).ok());
  EXPECT_TRUE(device_->add_file(std::string(55, 'x'), {}).ok());
  EXPECT_TRUE(device_->add_file("bootorder", {}).ok());
  EXPECT_FALSE(device_->add_file("bootorder", {}).ok());
  EXPECT_FALSE(device_->set_item(fw_cfg::kFileFirst, {}).ok());
  EXPECT_TRUE(device_->set_item(fw_cfg::kArchLocal | 3, {1}).ok());
}

TEST_F(FwCfgTest, DmaSelectAndReadWithZeroFillPastTheEnd) {
  ASSERT_TRUE(device_->set_item(fw_cfg::kRamSize, {1, 2, 3, 4, 5, 6, 7, 8}).ok());
  ASSERT_TRUE(memory_.fill(GuestAddress(0x2000), 0xee, 16).ok());
  dma(0x1000, fw_cfg::kRamSize << 16 | fw_cfg::kDmaSelect | fw_cfg::kDmaRead, 12, 0x2000);
  EXPECT_EQ(control_at(0x1000), 0u);
  EXPECT_EQ(ram(0x2000, 16), (std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0xee, 0xee, 0xee, 0xee}));
}

TEST_F(FwCfgTest, DmaSkipThenReadAndPortReadsContinueWhereDmaStopped) {
  ASSERT_TRUE(device_->set_item(fw_cfg::kUuid, {10, 11, 12, 13, 14, 15}).ok());
  dma(0x1000, fw_cfg::kUuid << 16 | fw_cfg::kDmaSelect | fw_cfg::kDmaSkip, 2, 0);
  EXPECT_EQ(control_at(0x1000), 0u);
  dma(0x1000, fw_cfg::kDmaRead, 2, 0x3000);
  EXPECT_EQ(control_at(0x1000), 0u);
  EXPECT_EQ(ram(0x3000, 2), (std::vector<uint8_t>{12, 13}));
  EXPECT_EQ(read_data(2), (std::vector<uint8_t>{14, 15}));
}

TEST_F(FwCfgTest, DmaWriteIsAnError) {
  dma(0x1000, fw_cfg::kSignature << 16 | fw_cfg::kDmaSelect | fw_cfg::kDmaWrite, 4, 0x2000);
  EXPECT_EQ(control_at(0x1000), fw_cfg::kDmaError);
}

TEST_F(FwCfgTest, DmaBufferOutsideRamIsAnErrorAndTouchesNothing) {
  dma(0x1000, fw_cfg::kSignature << 16 | fw_cfg::kDmaSelect | fw_cfg::kDmaRead, 4, kRamSize - 2);
  EXPECT_EQ(control_at(0x1000), fw_cfg::kDmaError);
  dma(0x1000, fw_cfg::kSignature << 16 | fw_cfg::kDmaSelect | fw_cfg::kDmaRead, 0xffffffff, 0x2000);
  EXPECT_EQ(control_at(0x1000), fw_cfg::kDmaError) << "the zero fill runs past RAM";
  dma(0x1000, fw_cfg::kSignature << 16 | fw_cfg::kDmaSelect | fw_cfg::kDmaRead, 16, ~uint64_t{0} - 4);
  EXPECT_EQ(control_at(0x1000), fw_cfg::kDmaError) << "a buffer that wraps";
}

TEST_F(FwCfgTest, DescriptorOutsideRamIsDropped) {
  start_dma(kRamSize - 8);  // straddles the end of RAM
  start_dma(~uint64_t{0});
  select(fw_cfg::kSignature);
  EXPECT_EQ(read_data(1), (std::vector<uint8_t>{'Q'})) << "the device still works";
}

TEST_F(FwCfgTest, StateRestoresAndRejectsAnOffsetPastTheItem) {
  select(fw_cfg::kSignature);
  read_data(3);
  const FwCfg::State state = device_->save();
  select(fw_cfg::kId);
  ASSERT_TRUE(device_->restore(state).ok());
  EXPECT_EQ(read_data(1), (std::vector<uint8_t>{'U'}));
  EXPECT_FALSE(device_->restore(FwCfg::State{fw_cfg::kSignature, 5, 0}).ok());
}

}  // namespace
}  // namespace hostvisor
