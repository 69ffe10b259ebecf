// Raw images: the file is the disk, byte for byte.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <vector>

#include "block/file_image.h"

namespace hostvisor::block {

class RawImage final : public FileImage {
 public:
  static Result<std::unique_ptr<RawImage>> open(std::unique_ptr<HostFile> file);
  static Result<void> create(const std::string& path, uint64_t size);
  ~RawImage() override;

  const char* format_name() const override { return "raw"; }
  uint64_t virtual_size() const override { return size_; }
  Result<void> readv(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> writev(uint64_t offset, std::span<const iovec> iov) override;
  Result<void> flush() override;
  Result<void> discard(uint64_t offset, uint64_t length) override;
  Result<void> write_zeroes(uint64_t offset, uint64_t length) override;
  Result<void> resize(uint64_t new_size);

  // Straight to the I/O engine: no extra thread between the guest and the disk.
  // Every step of a request is an engine request: reads and writes;
  // discard and write-zeroes as fallocate (PUNCH_HOLE or ZERO_RANGE, falling
  // back to writing zeros); O_DIRECT requests the guest's buffers do not suit
  // through a per-request aligned bounce buffer (a read of the covering
  // blocks, or a read-modify-write of the partial blocks at either end). A
  // step's completion submits the next, so submit() returns at once.
  //
  // With O_DIRECT a read-modify-write rewrites whole blocks, bytes the guest
  // did not ask to write included, so it excludes every other change to those
  // blocks while it runs (a small range lock over the aligned extent of each
  // write, discard and write-zeroes). A flush waits for every request
  // submitted before it, then runs fdatasync.
  void submit(BlockRequest request, BlockCompletion done) override;
  void poll_completions(bool wait) override;
  int notify_fd() override { return file_->engine().notify_fd(); }
  size_t requests_in_flight() const override { return in_flight_; }

  // The format was guessed from the contents: a write that would make the
  // file probe as another format next time (a qcow2 header in its first
  // bytes, pointing at any host file as its backing file) is refused.
  void set_format_probed() { format_probed_ = true; }

 private:
  explicit RawImage(std::unique_ptr<HostFile> file, uint64_t size) : FileImage(std::move(file)), size_(size) {}
  struct Op;
  struct Transfer;
  using Step = std::function<void(Result<void>)>;
  void complete_now(BlockCompletion done, Result<void> result);
  // With a probed format: refuses a write of an image-format magic at offset 0.
  Result<void> check_header_write(uint64_t offset, std::span<const iovec> iov) const;
  // Runs an op once the range lock lets it (at once without O_DIRECT).
  void admit(std::shared_ptr<Op> op);
  bool conflicts(const Op& a, const Op& b) const;
  void start(std::shared_ptr<Op> op);
  void finish(std::shared_ptr<Op> op, Result<void> result);
  void release_flushes();
  // Reads or writes all of iov at offset, continuing short transfers and
  // splitting at IOV_MAX; a read past the end of the file yields zeros.
  void transfer_async(IoOp kind, uint64_t offset, std::vector<iovec> iov, Step next);
  void transfer_step(std::shared_ptr<Transfer> t);
  // transfer_async through an aligned bounce buffer (O_DIRECT, unaligned request).
  void bounced_read(uint64_t offset, std::vector<iovec> iov, Step next);
  void bounced_write(uint64_t offset, std::vector<iovec> iov, Step next);
  // Either of the above or straight to the engine, as alignment requires.
  void rw_async(IoOp kind, uint64_t offset, std::vector<iovec> iov, Step next);
  void write_zeroes_async(std::shared_ptr<Op> op, Step next);
  void write_zero_buffers(std::shared_ptr<Op> op, uint64_t offset, uint64_t length, Step next);

  uint64_t size_;
  size_t in_flight_ = 0;  // guest requests submitted whose completion has not run
  // Inside poll_completions(): a finished request's completion runs at once.
  // Elsewhere (a step that finished without I/O inside submit(), or engine
  // callbacks run by a synchronous call) it is queued in ready_ for the next poll.
  bool polling_ = false;
  std::deque<std::pair<BlockCompletion, Result<void>>> ready_;
  uint64_t next_seq_ = 0;
  std::set<uint64_t> running_seqs_;               // admitted or waiting, not finished; flushes excluded
  std::deque<std::shared_ptr<Op>> held_flushes_;  // waiting for earlier requests
  std::vector<std::shared_ptr<Op>> locked_;       // holding the range lock (O_DIRECT only)
  std::deque<std::shared_ptr<Op>> lock_waiters_;
  AlignedBuffer zeros_;  // shared source for writing zeros
  bool format_probed_ = false;
};

}  // namespace hostvisor::block
