// State changes for /v1/events: every subscriber gets its own bounded queue,
// so a client that stops reading loses its oldest events, never the
// daemon's memory.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

namespace hostvisor::api {

class EventQueue {
 public:
  static constexpr size_t kCapacity = 1024;
  // The next event, or nothing after `timeout` (the stream then sends a
  // keep-alive and notices a client that went away).
  std::optional<nlohmann::json> next(std::chrono::milliseconds timeout);
  void push(const nlohmann::json& event);

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<nlohmann::json> events_;
};

class EventBus {
 public:
  std::shared_ptr<EventQueue> subscribe();
  void unsubscribe(const std::shared_ptr<EventQueue>& queue);
  // Stamps the event with the time and hands it to every subscriber.
  void publish(nlohmann::json event);

 private:
  std::mutex mutex_;
  std::vector<std::shared_ptr<EventQueue>> queues_;
};

}  // namespace hostvisor::api
