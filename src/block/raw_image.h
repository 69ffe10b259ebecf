// Raw images: the file is the disk, byte for byte.
#pragma once

#include <deque>
#include <memory>

#include "block/block_device.h"
#include "block/host_file.h"

namespace hostvisor::block {

class RawImage final : public BlockDevice {
 public:
  static Result<std::unique_ptr<RawImage>> open(std::unique_ptr<HostFile> file);
  static Result<void> create(const std::string& path, uint64_t size);
  ~RawImage() override;

  const char* format_name() const override { return "raw"; }
  uint64_t virtual_size() const override { return size_; }
  bool read_only() const override { return !file_->writable(); }
  Result<void> readv(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> writev(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> flush() override;
  Result<void> discard(uint64_t offset, uint64_t length) override;
  Result<void> write_zeroes(uint64_t offset, uint64_t length) override;
  Result<void> resize(uint64_t new_size);

  // Straight to the I/O engine: no extra thread between the guest and the disk.
  void submit(BlockRequest request, BlockCompletion done) override;
  void poll_completions(bool wait) override;
  int notify_fd() override { return file_->engine().notify_fd(); }
  size_t requests_in_flight() const override { return in_flight_; }

  HostFile& file() { return *file_; }

 private:
  explicit RawImage(std::unique_ptr<HostFile> file, uint64_t size) : file_(std::move(file)), size_(size) {}
  struct Pending;
  void complete_now(BlockCompletion done, Result<void> result);
  void finish(Pending* p, int64_t n);

  std::unique_ptr<HostFile> file_;
  uint64_t size_;
  size_t in_flight_ = 0;
  std::deque<std::pair<BlockCompletion, Result<void>>> ready_;
};

}  // namespace hostvisor::block
