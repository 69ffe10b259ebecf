// The ioeventfd fast path for virtqueue notifications, shared by the virtio
// transports (VirtioPciFastPath, VirtioMmioSlots) on a backend with fast
// eventfds (KVM): one eventfd per queue of a device, watched by the event
// loop for this object's whole life, and registered with the backend as the
// write that notifies that queue (the transport's notify register for it,
// the queue index as datamatch). A matching guest write then does not exit:
// the vCPU goes straight back to the guest and the queue runs on the event
// loop. Any other write (another width or value) still exits and reaches
// the transport through the bus, which does the same thing, so both paths
// agree.
//
// The eventfds stay watched while registrations come and go (a PCI BAR that
// moves), so a signal that arrived before an unregister is still handled.
// Not thread-safe: the owner serializes register_at() and unregister().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "hv/hypervisor.h"
#include "vmm/event_loop.h"

namespace hostvisor {

class QueueNotifyEvents {
 public:
  // Runs queue `queue` of the device, on the event loop. It must not call
  // back into this object.
  using Notify = std::function<void(uint16_t queue)>;

  // Creates and watches one eventfd per queue. `name` says whose queues
  // they are in log messages ("virtio-pci rng"); `write_length` is the width
  // of the notify write the driver does (2 for virtio-pci, 4 for
  // virtio-mmio). `vm` and `loop` must outlive the object.
  static Result<std::unique_ptr<QueueNotifyEvents>> create(Vm& vm, EventLoop& loop, std::string name,
                                                           uint16_t queue_count, uint32_t write_length, Notify notify);
  // Unregisters every ioeventfd and stops watching the eventfds.
  ~QueueNotifyEvents();
  QueueNotifyEvents(const QueueNotifyEvents&) = delete;
  QueueNotifyEvents& operator=(const QueueNotifyEvents&) = delete;

  // Registers each queue's ioeventfd at notify_address(queue). A queue the
  // backend refuses is logged and left on the exit path (slower, not wrong).
  void register_at(const std::function<uint64_t(uint16_t queue)>& notify_address);
  void unregister();

  // Queues whose notify write currently has an ioeventfd.
  size_t registered_queues() const;

 private:
  struct Queue {
    std::shared_ptr<EventFd> event;         // shared with its event-loop handler
    std::optional<uint64_t> registered_at;  // guest-physical address of the ioeventfd
  };
  QueueNotifyEvents(Vm& vm, EventLoop& loop, std::string name, uint32_t write_length)
      : vm_(vm), loop_(loop), name_(std::move(name)), write_length_(write_length) {}

  Vm& vm_;
  EventLoop& loop_;
  std::string name_;
  uint32_t write_length_;
  std::vector<Queue> queues_;
};

}  // namespace hostvisor
