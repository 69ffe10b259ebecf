#include "vmm/console_output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "base/log.h"

namespace hostvisor {

Result<std::shared_ptr<ConsoleOutput>> ConsoleOutput::create(const Options& options) {
  std::shared_ptr<ConsoleOutput> output(new ConsoleOutput(options));
  if (options.to_stdout) output->terminal_ = std::make_unique<TerminalWriter>(STDOUT_FILENO);
  if (!options.log_path.empty()) {
    auto log = open_file(options.log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (!log) return std::move(log).error().with_context("--console-log");
    struct stat st {};
    if (::fstat(log->get(), &st) == 0) output->log_size_ = static_cast<uint64_t>(st.st_size);
    output->log_ = std::move(*log);
  }
  return output;
}

void ConsoleOutput::write(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  if (terminal_) terminal_->write(bytes);
  std::lock_guard lock(mutex_);
  append_ring(bytes);
  if (log_.valid()) append_log(bytes);
  for (auto& [id, sink] : sinks_) sink(bytes);
}

void ConsoleOutput::append_ring(std::span<const uint8_t> bytes) {
  if (bytes.size() >= kReplayBytes) {
    bytes = bytes.subspan(bytes.size() - kReplayBytes);
    std::copy(bytes.begin(), bytes.end(), ring_.begin());
    ring_start_ = 0;
    ring_size_ = kReplayBytes;
    return;
  }
  for (uint8_t byte : bytes) {
    ring_[(ring_start_ + ring_size_) % kReplayBytes] = byte;
    if (ring_size_ < kReplayBytes)
      ++ring_size_;
    else
      ring_start_ = (ring_start_ + 1) % kReplayBytes;
  }
}

void ConsoleOutput::append_log(std::span<const uint8_t> bytes) {
  if (log_size_ >= options_.log_rotate_bytes) rotate_log();
  if (!log_.valid()) return;
  auto written = write_fully(log_.get(), bytes);
  if (!written) {
    if (!log_failed_)
      HV_LOG_WARN("--console-log {}: {}; the log stops here", options_.log_path, written.error().message());
    log_failed_ = true;
    log_.reset();
    return;
  }
  log_size_ += bytes.size();
}

void ConsoleOutput::rotate_log() {
  // FILE.1 is the one older file: a log never takes more than twice the cap.
  const std::string older = options_.log_path + ".1";
  if (::rename(options_.log_path.c_str(), older.c_str()) != 0) {
    HV_LOG_WARN("--console-log: cannot rotate {} to {}: {}; the log stops here", options_.log_path, older,
                std::strerror(errno));
    log_.reset();
    return;
  }
  auto log = open_file(options_.log_path, O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0600);
  if (!log) {
    HV_LOG_WARN("--console-log: {}; the log stops here", log.error().message());
    log_.reset();
    return;
  }
  log_ = std::move(*log);
  log_size_ = 0;
}

std::vector<uint8_t> ConsoleOutput::replay_locked() const {
  std::vector<uint8_t> bytes(ring_size_);
  for (size_t i = 0; i < ring_size_; ++i) bytes[i] = ring_[(ring_start_ + i) % kReplayBytes];
  return bytes;
}

std::vector<uint8_t> ConsoleOutput::replay() const {
  std::lock_guard lock(mutex_);
  return replay_locked();
}

uint64_t ConsoleOutput::attach(Sink sink, bool replay) {
  std::lock_guard lock(mutex_);
  if (replay && ring_size_ > 0) sink(replay_locked());
  const uint64_t id = next_id_++;
  sinks_.emplace(id, std::move(sink));
  return id;
}

void ConsoleOutput::detach(uint64_t id) {
  std::lock_guard lock(mutex_);
  sinks_.erase(id);
}

}  // namespace hostvisor
