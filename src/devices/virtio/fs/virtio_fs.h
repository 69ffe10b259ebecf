// virtio-fs (virtio 1.2, 5.11): a host directory shared with the guest,
// served in process by a FUSE server (src/fs/), with no external daemon and
// no privileges.
//
// Queues: the high-priority queue (0) carries FORGETs, served at once on
// the notifying thread (they only drop table entries); the request queue (1)
// carries everything else, served by a small pool of worker threads, so a
// slow host file never holds a vCPU or the event loop.
//
// Back-pressure: at most kMaxInFlight requests are taken off the ring at a
// time. Past that the device leaves chains in the available ring until a
// worker finishes one, so a guest that floods requests fills its own ring,
// never host memory; each request's buffers on the host are bounded by
// FuseServer::kMaxRequest and kMaxReply.
//
// Reset: workers finish what they are doing (a lock wait is cut short),
// requests not started are dropped with the rings, and the FUSE session
// starts over (every node ID and file handle the driver held is void).
//
// Snapshots: refused (quiesce() fails). The guest kernel holds node IDs and
// open file handles that name host descriptors in this process; a restored
// guest would hold IDs that name nothing.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio/fs/virtio_fs_spec.h"
#include "devices/virtio/virtio_device_core.h"
#include "fs/fuse_server.h"

namespace hostvisor {

struct VirtioFsOptions {
  std::string tag;  // what the guest mounts: mount -t virtiofs TAG DIR
  uint16_t queue_size = 256;
  unsigned workers = 4;
};

class VirtioFs : public VirtioDeviceCore {
 public:
  static constexpr size_t kMaxInFlight = 8;

  VirtioFs(std::unique_ptr<fs::FuseServer> server, VirtioFsOptions options);
  ~VirtioFs() override;

  std::string_view name() const override { return "fs"; }
  uint32_t device_type() const override { return virtio_fs::kDeviceFs; }
  uint64_t device_features() const override;
  uint32_t config_size() const override { return sizeof(virtio_fs::Config); }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  Result<void> quiesce() override;

  const std::string& tag() const { return options_.tag; }
  // Requests answered so far, for tests.
  uint64_t requests_completed() const;
  // The most requests ever held off the ring at once (never above kMaxInFlight).
  size_t peak_in_flight() const;

 private:
  struct Job {
    uint16_t queue;
    DescriptorChain chain;
    GuestMemory* memory;
  };
  struct Done {
    uint16_t queue;
    DescriptorChain chain;
    uint64_t written;
  };

  void on_reset() override;
  void serve_queue(uint16_t queue) override;
  // Serves one request and writes its reply; the bytes written.
  uint64_t serve(const DescriptorChain& chain, GuestMemory& memory);
  void worker_loop();
  // Returns finished requests to the driver and takes more (mutex_ held).
  void finish_done_locked();

  std::unique_ptr<fs::FuseServer> server_;
  VirtioFsOptions options_;

  // --- guarded by the core's mutex_
  size_t in_flight_ = 0;  // taken off the ring, not yet given back
  uint64_t completed_ = 0;
  size_t peak_in_flight_ = 0;

  // --- the pool, guarded by pool_mutex_ (never taken before mutex_ is released)
  std::mutex pool_mutex_;
  std::condition_variable work_ready_, worker_idle_;
  std::deque<Job> jobs_;
  std::vector<Done> done_;
  size_t busy_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace hostvisor
