#include "api/event_bus.h"

#include <algorithm>

namespace hostvisor::api {

std::optional<nlohmann::json> EventQueue::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!ready_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
  nlohmann::json event = std::move(events_.front());
  events_.pop_front();
  return event;
}

void EventQueue::push(const nlohmann::json& event) {
  {
    std::lock_guard lock(mutex_);
    if (events_.size() >= kCapacity) events_.pop_front();
    events_.push_back(event);
  }
  ready_.notify_one();
}

std::shared_ptr<EventQueue> EventBus::subscribe() {
  auto queue = std::make_shared<EventQueue>();
  std::lock_guard lock(mutex_);
  queues_.push_back(queue);
  return queue;
}

void EventBus::unsubscribe(const std::shared_ptr<EventQueue>& queue) {
  std::lock_guard lock(mutex_);
  std::erase(queues_, queue);
}

void EventBus::publish(nlohmann::json event) {
  event["time"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  std::lock_guard lock(mutex_);
  for (const auto& queue : queues_) queue->push(event);
}

}  // namespace hostvisor::api
