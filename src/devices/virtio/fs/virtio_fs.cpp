#include "devices/virtio/fs/virtio_fs.h"

#include <algorithm>
#include <cstring>

#include "devices/virtio/virtio_constants.h"
#include "sandbox/seccomp/thread_filter.h"

namespace hostvisor {

VirtioFs::VirtioFs(std::unique_ptr<fs::FuseServer> server, VirtioFsOptions options)
    : VirtioDeviceCore(1 + virtio_fs::kRequestQueues, options.queue_size),
      server_(std::move(server)),
      options_(std::move(options)) {
  const unsigned workers = std::clamp(options_.workers, 1u, 16u);
  for (unsigned i = 0; i < workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

VirtioFs::~VirtioFs() {
  {
    std::lock_guard lock(pool_mutex_);
    stopping_ = true;
    jobs_.clear();
  }
  server_->stop_waiting();
  work_ready_.notify_all();
  for (auto& worker : workers_) worker.join();
}

uint64_t VirtioFs::device_features() const {
  return virtio::feature_bit(virtio::kFeatureIndirectDesc) | virtio::feature_bit(virtio::kFeatureEventIdx);
}

void VirtioFs::read_config(uint64_t offset, std::span<uint8_t> data) {
  virtio_fs::Config c{};
  std::memcpy(c.tag, options_.tag.data(), std::min(options_.tag.size(), virtio_fs::kTagBytes));
  c.num_request_queues = virtio_fs::kRequestQueues;
  read_config_bytes(c, offset, data);
}

Result<void> VirtioFs::quiesce() {
  return Error(ErrorCode::kUnsupported,
               "virtio-fs share '" + options_.tag +
                   "': a VM with shared folders cannot be snapshotted (the guest holds open files of this process)");
}

uint64_t VirtioFs::requests_completed() const {
  std::lock_guard lock(mutex_);
  return completed_;
}

uint64_t VirtioFs::serve(const DescriptorChain& chain, GuestMemory& memory) {
  // Never more than the largest request the server takes: a longer one is
  // cut, and the server answers it EINVAL from its header.
  std::vector<uint8_t> request(std::min<uint64_t>(chain.readable_bytes(), fs::FuseServer::kMaxRequest));
  auto got = chain.read(memory, 0, request);
  if (!got) return 0;
  request.resize(*got);
  auto reply = server_->handle(request, chain.writable_bytes());
  if (!reply) return 0;
  auto wrote = chain.write(memory, 0, *reply);
  return wrote ? *wrote : 0;
}

void VirtioFs::serve_queue(uint16_t queue) {
  if (queue == virtio_fs::kHiprioQueue) {
    while (auto chain = next_chain(queue)) {
      const uint64_t written = serve(*chain, memory());
      if (!complete(queue, *chain, written)) return;
      ++completed_;
    }
    return;
  }
  while (in_flight_ < kMaxInFlight) {
    auto chain = next_chain(queue);
    if (!chain) return;
    ++in_flight_;
    peak_in_flight_ = std::max(peak_in_flight_, in_flight_);
    {
      std::lock_guard lock(pool_mutex_);
      jobs_.push_back(Job{queue, std::move(*chain), &memory()});
    }
    work_ready_.notify_one();
  }
  // The rest waits in the ring: a worker's completion takes more.
}

void VirtioFs::worker_loop() {
  sandbox::install_thread_filter(sandbox::ThreadKind::kShareWorker);
  for (;;) {
    Job job;
    {
      std::unique_lock lock(pool_mutex_);
      work_ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      ++busy_;
    }
    // Without the device lock: the host I/O and the guest buffers are this
    // request's alone; a reset waits for busy_ to reach zero before the
    // driver gets its memory back.
    const uint64_t written = serve(job.chain, *job.memory);
    {
      std::lock_guard lock(pool_mutex_);
      done_.push_back(Done{job.queue, std::move(job.chain), written});
      --busy_;
    }
    worker_idle_.notify_all();
    run_turn([this] { finish_done_locked(); });
  }
}

void VirtioFs::finish_done_locked() {
  std::vector<Done> done;
  {
    std::lock_guard lock(pool_mutex_);
    done.swap(done_);
  }
  for (auto& d : done) {
    --in_flight_;
    if (running() && complete(d.queue, d.chain, d.written)) ++completed_;
  }
  if (!done.empty() && serving(virtio_fs::kRequestQueue)) serve_queue(virtio_fs::kRequestQueue);
}

size_t VirtioFs::peak_in_flight() const {
  std::lock_guard lock(mutex_);
  return peak_in_flight_;
}

void VirtioFs::on_reset() {
  server_->stop_waiting();
  {
    std::unique_lock lock(pool_mutex_);
    jobs_.clear();  // never started: dropped with the rings
    worker_idle_.wait(lock, [this] { return busy_ == 0; });
    done_.clear();
  }
  in_flight_ = 0;
  server_->reset();
}

}  // namespace hostvisor
