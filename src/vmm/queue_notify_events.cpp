#include "vmm/queue_notify_events.h"

#include <sys/eventfd.h>

#include "base/log.h"
#include "base/log_rate_limit.h"

namespace hostvisor {

Result<std::unique_ptr<QueueNotifyEvents>> QueueNotifyEvents::create(Vm& vm, EventLoop& loop, std::string name,
                                                                     uint16_t queue_count, uint32_t write_length,
                                                                     Notify notify) {
  std::unique_ptr<QueueNotifyEvents> events(new QueueNotifyEvents(vm, loop, std::move(name), write_length));
  for (uint16_t q = 0; q < queue_count; ++q) {
    auto event = std::make_shared<EventFd>(HV_TRY(EventFd::create(0, EFD_NONBLOCK)));
    auto watched = loop.add(event->fd(), [event, notify, q](uint32_t) {
      // Several notifies between two wake-ups are one: the queue is drained
      // completely each time anyway.
      if (event->consume() == 0) return;
      notify(q);
    });
    // The destructor stops watching the queues already added.
    if (!watched) return std::move(watched).error().with_context(events->name_ + " queue " + std::to_string(q));
    events->queues_.push_back(Queue{std::move(event), std::nullopt});
  }
  return events;
}

QueueNotifyEvents::~QueueNotifyEvents() {
  unregister();
  for (Queue& q : queues_) loop_.remove(q.event->fd());
}

void QueueNotifyEvents::register_at(const std::function<uint64_t(uint16_t queue)>& notify_address) {
  for (uint16_t q = 0; q < queues_.size(); ++q) {
    Queue& queue = queues_[q];
    if (queue.registered_at) continue;
    const uint64_t at = notify_address(q);
    auto registered = vm_.register_ioeventfd(*queue.event, at, write_length_, false, uint64_t{q});
    if (!registered) {
      // The write still reaches the device through the bus, only slower.
      HV_LOG_WARN_LIMITED("{} queue {}: no ioeventfd at {:#x} ({}); notifies take the exit path", name_, q, at,
                          registered.error().message());
      continue;
    }
    queue.registered_at = at;
  }
}

void QueueNotifyEvents::unregister() {
  for (uint16_t q = 0; q < queues_.size(); ++q) {
    Queue& queue = queues_[q];
    if (!queue.registered_at) continue;
    auto removed = vm_.unregister_ioeventfd(*queue.event, *queue.registered_at, write_length_, false, uint64_t{q});
    if (!removed)
      HV_LOG_WARN_LIMITED("{} queue {}: removing the ioeventfd at {:#x}: {}", name_, q, *queue.registered_at,
                          removed.error().message());
    queue.registered_at.reset();
  }
}

size_t QueueNotifyEvents::registered_queues() const {
  size_t n = 0;
  for (const Queue& q : queues_) n += q.registered_at.has_value();
  return n;
}

}  // namespace hostvisor
