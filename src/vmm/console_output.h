// Where the guest's console output goes: the host terminal (stdout, unless
// --headless), a size-capped log file (--console-log), a ring of the last
// 64 KiB (replayed to a console attachment that asks), and every attachment
// of the control socket. It outlives each Machine of a run (a reboot keeps
// the log, the ring and the attachments).
//
// write() is called by whichever thread the guest's device prints on (a
// vCPU thread for the UART, the event loop for virtio-console): it never
// blocks on a reader, the terminal included (a TerminalWriter holds what
// stdout does not take at once, up to its bound). A sink must take
// what it is given at once (the control server queues it, dropping what a
// slow reader has no room for).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "vmm/terminal_writer.h"

namespace hostvisor {

class ConsoleOutput {
 public:
  static constexpr size_t kReplayBytes = 64 * 1024;
  static constexpr uint64_t kLogRotateBytes = 4ull << 20;

  struct Options {
    bool to_stdout = true;
    std::string log_path;  // empty: no log
    uint64_t log_rotate_bytes = kLogRotateBytes;
  };
  // Opens (appends to) the log, created 0600.
  static Result<std::shared_ptr<ConsoleOutput>> create(const Options& options);

  // The guest printed `bytes`. Thread-safe.
  void write(std::span<const uint8_t> bytes);

  using Sink = std::function<void(std::span<const uint8_t>)>;
  // From now on `sink` gets every write; with replay it first gets the
  // ring's bytes, with nothing lost or doubled in between (both under one
  // lock). Returns the id for detach().
  uint64_t attach(Sink sink, bool replay);
  void detach(uint64_t id);

  // The ring's bytes, oldest first.
  std::vector<uint8_t> replay() const;

 private:
  explicit ConsoleOutput(const Options& options) : options_(options) {}
  void append_log(std::span<const uint8_t> bytes);   // with mutex_ held
  void rotate_log();                                 // with mutex_ held
  void append_ring(std::span<const uint8_t> bytes);  // with mutex_ held
  std::vector<uint8_t> replay_locked() const;

  Options options_;
  std::unique_ptr<TerminalWriter> terminal_;  // stdout, when options_.to_stdout
  mutable std::mutex mutex_;
  UniqueFd log_;
  uint64_t log_size_ = 0;
  bool log_failed_ = false;  // warned once; the guest runs on without its log
  std::vector<uint8_t> ring_ = std::vector<uint8_t>(kReplayBytes);
  size_t ring_start_ = 0, ring_size_ = 0;
  std::map<uint64_t, Sink> sinks_;
  uint64_t next_id_ = 1;
};

}  // namespace hostvisor
