// GuestClockSync: has the guest agent set the guest's wall clock to the
// host's when it has fallen behind: after a resume (Ctrl-A p), a restore,
// or a long host stall (the process stopped, the host suspended), and
// completes a clone's new identity in the guest: it reseeds the guest's RNG
// and moves each network interface from the snapshot's MAC to the one its
// NIC got for the clone. The guest's own clock does not see time it spent
// paused or on disk (docs/ARCHITECTURE.md, "Time"), and Linux's virtio-net
// driver reads its MAC from the device only when it probes it, so a clone's
// new MAC in config space alone is not the address the guest sends from.
//
// The agent is hostvisor-agent, reached through the machine's own vsock
// socket, or, when the guest runs none (nothing answers on its port) or the
// machine has no vsock device, qemu-guest-agent through the machine's --qga
// port (guest-set-time; it cannot reseed an RNG, which is logged). Both
// sockets' host sides are served by the event loop, so the calls run on a
// thread of their own: a call from the event loop would wait for itself.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent_connection.h"
#include "net/mac_address.h"

namespace hostvisor {

class GuestClockSync {
 public:
  // A gap of this much more than the thread's 1 s tick is a host stall.
  static constexpr int kStallSeconds = 5;

  // The agents the machine can reach; an empty connector is one it has not.
  struct Agents {
    agent::AgentConnector hostvisor;  // the vsock socket's port 1024
    agent::AgentConnector qemu_ga;    // the --qga port's socket
  };

  explicit GuestClockSync(Agents agents);
  ~GuestClockSync();  // stops and joins the thread
  GuestClockSync(const GuestClockSync&) = delete;
  GuestClockSync& operator=(const GuestClockSync&) = delete;

  // A clone's NIC: the MAC the guest's driver has from the snapshot, and
  // the NIC's new one.
  struct MacChange {
    net::MacAddress snapshot;
    net::MacAddress clone;
  };

  // Asks for a sync (returns at once); `reason` goes in the log line.
  // With reseed, the guest's RNG is reseeded first, and each interface
  // with a `snapshot` MAC of `macs` is given its `clone` one (a clone).
  void request(const std::string& reason, bool reseed = false, std::vector<MacChange> macs = {});

 private:
  void thread_main();
  void sync(const std::string& reason, bool reseed, std::vector<MacChange> macs);
  // A client for the agent that answers: hostvisor-agent if it does (or if
  // there is no qemu-ga port to try), else qemu-ga.
  std::unique_ptr<agent::AgentClient> open_agent();

  Agents agents_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::string pending_reason_;
  bool pending_reseed_ = false;
  std::vector<MacChange> pending_macs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace hostvisor
