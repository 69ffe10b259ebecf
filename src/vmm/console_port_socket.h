// The host end of a named virtio console port (org.qemu.guest_agent.0 for
// `--qga PATH`): a unix socket hostvisor listens on, one client at a time.
// The client's bytes go to the port's input (read only while the port has
// room: back-pressure to the client, never a growing host buffer); the
// guest's bytes go to the client. A client connecting or leaving opens or
// closes the port's host end, which the guest sees (PORT_OPEN); a second
// client while one is connected is turned away.
//
// Guest output the client does not read in time (its socket buffer full) is
// dropped and counted by the device, as for the terminal: the device never
// waits for a client.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "devices/virtio/console/virtio_console.h"
#include "vmm/event_loop.h"

namespace hostvisor {

class ConsolePortSocket {
 public:
  // Listens on `path`. A stale socket there (nothing listening) is replaced;
  // anything else there is an error.
  static Result<std::unique_ptr<ConsolePortSocket>> listen(const std::string& path);
  ~ConsolePortSocket();

  // The port's output sink, for VirtioConsole::NamedPort (it may outlive this).
  VirtioConsole::OutputSink sink() const;
  // Serves clients on `loop` for port `port` of `console`.
  Result<void> attach(EventLoop& loop, std::shared_ptr<VirtioConsole> console, uint32_t port);

  const std::string& path() const { return path_; }

 private:
  // The connected client, shared with the sink (which runs on whichever
  // thread serves the port's transmit queue).
  struct Client {
    std::mutex mutex;
    UniqueFd fd;
  };

  ConsolePortSocket(std::string path, UniqueFd listener)
      : path_(std::move(path)), listener_(std::move(listener)), client_(std::make_shared<Client>()) {}
  void on_accept();
  // Watches the client for input (read) or only for its hang-up; false if
  // the loop would not take it.
  bool watch_client(bool read);
  void on_client_event(uint32_t events);
  void on_space();
  void disconnect();

  std::string path_;
  UniqueFd listener_;
  std::shared_ptr<Client> client_;
  // Loop-thread state.
  EventLoop* loop_ = nullptr;
  std::shared_ptr<VirtioConsole> console_;
  uint32_t port_ = 0;
  int client_fd_ = -1;         // the fd the loop watches (owned by client_)
  bool watching_ = false;      // the client fd is in the loop
  bool reading_ = false;       // ... for input (else only for a hang-up)
};

}  // namespace hostvisor
