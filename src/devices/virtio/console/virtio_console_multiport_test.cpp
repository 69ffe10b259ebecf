// Drives the virtio console's MULTIPORT side (5.3.6) as Linux's driver does,
// through the virtqueue test driver: the control handshake, a named port's
// bytes both ways, hostile control messages, bounded control output, and
// snapshots of both state versions.
#include <gtest/gtest.h>

#include <poll.h>

#include <cstring>
#include <string>
#include <vector>

#include "devices/virtio/console/virtio_console.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"

namespace hostvisor {
namespace {

using namespace virtio_console;
using testing::RecordingVirtioInterrupt;
using testing::VirtqueueTestDriver;

constexpr uint64_t kRam = 1 << 20;
constexpr uint16_t kQueueSize = 16;
constexpr uint16_t kQueues = 6;  // port 0, control, port 1
const std::string kAgentPort = "org.qemu.guest_agent.0";

struct Message {
  uint32_t id;
  uint16_t event;
  uint16_t value;
  std::string extra;
  bool operator==(const Message&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Message& m) {
  return os << "{port " << m.id << ", event " << m.event << ", value " << m.value << ", '" << m.extra << "'}";
}

class VirtioConsoleMultiportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memory = std::move(GuestMemory::create({{GuestAddress(0), kRam}})).value();
    std::vector<VirtioConsole::NamedPort> ports;
    ports.push_back({kAgentPort, [this](std::span<const uint8_t> b) {
                       agent_output.append(b.begin(), b.end());
                       return true;
                     },
                     [this](bool open) { open_events.push_back(open); }, 32});
    console = std::move(VirtioConsole::create(
                            [this](std::span<const uint8_t> b) { console_output.append(b.begin(), b.end()); }, 64,
                            std::move(ports)))
                  .value();
    for (uint16_t q = 0; q < kQueues; ++q)
      rings.push_back(std::make_unique<VirtqueueTestDriver>(memory, kQueueSize, 0x10000 + 0x2000ull * q));
  }
  void activate(bool multiport = true) {
    uint64_t features = console->device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
    if (!multiport) features &= ~virtio::feature_bit(kFeatureMultiport);
    for (uint16_t q = 0; q < kQueues; ++q) {
      queues[q] = std::move(Virtqueue::create(memory, rings[q]->layout(), features)).value();
      enabled[q] = multiport || q < 2;
    }
    ASSERT_TRUE(console->activate(VirtioActivation{&memory, features, queues, enabled, &interrupt}).ok());
  }
  uint64_t buffer(uint16_t queue, uint16_t slot) const { return 0x40000 + 0x4000ull * queue + 0x200ull * slot; }
  // The driver posts a device-writable buffer on `queue`.
  void post(uint16_t queue, uint32_t size = 0x200) {
    const uint16_t slot = next[queue]++ % kQueueSize;
    rings[queue]->add_chain(slot, {{buffer(queue, slot), size, true}});
    ASSERT_TRUE(console->process_queue(queue).ok());
  }
  // The driver sends `bytes` on `queue`.
  void send(uint16_t queue, const std::string& bytes) {
    const uint16_t slot = next[queue]++ % kQueueSize;
    ASSERT_TRUE(memory.write(GuestAddress(buffer(queue, slot)),
                             std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()))
                    .ok());
    rings[queue]->add_chain(slot, {{buffer(queue, slot), static_cast<uint32_t>(bytes.size()), false}});
    ASSERT_TRUE(console->process_queue(queue).ok());
  }
  void control(uint32_t id, uint16_t event, uint16_t value) {
    ControlMessage m{id, event, value};
    send(kControlTransmitQueue, std::string(reinterpret_cast<const char*>(&m), sizeof m));
  }
  // What the device returned on `queue` since the last call.
  std::vector<std::string> received(uint16_t queue) {
    std::vector<std::string> out;
    for (; seen[queue] != rings[queue]->used_idx(); ++seen[queue]) {
      auto used = rings[queue]->used(seen[queue]);
      std::string s(used.len, '\0');
      EXPECT_TRUE(memory
                      .read(GuestAddress(buffer(queue, static_cast<uint16_t>(used.id))),
                            std::span(reinterpret_cast<uint8_t*>(s.data()), s.size()))
                      .ok());
      out.push_back(s);
    }
    return out;
  }
  std::vector<Message> messages() {
    std::vector<Message> out;
    for (const std::string& s : received(kControlReceiveQueue)) {
      EXPECT_GE(s.size(), sizeof(ControlMessage));
      ControlMessage m{};
      std::memcpy(&m, s.data(), std::min(s.size(), sizeof m));
      out.push_back({m.id, m.event, m.value, s.size() > sizeof m ? s.substr(sizeof m) : ""});
    }
    return out;
  }
  // Linux's probe: buffers for the control queue, DEVICE_READY, and each
  // added port set up (PORT_READY).
  void handshake() {
    activate();
    for (int i = 0; i < 8; ++i) post(kControlReceiveQueue);
    control(0, kDeviceReady, 1);
    ASSERT_EQ(messages(), (std::vector<Message>{{0, kDeviceAdd, 0, ""}, {1, kDeviceAdd, 0, ""}}));
    control(0, kPortReady, 1);
    control(1, kPortReady, 1);
  }
  size_t enqueue(uint32_t port, const std::string& s) {
    return console->enqueue_input(port, std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }

  GuestMemory memory;
  std::shared_ptr<VirtioConsole> console;
  std::vector<std::unique_ptr<VirtqueueTestDriver>> rings;
  Virtqueue queues[kQueues];
  bool enabled[kQueues] = {};
  uint16_t next[kQueues] = {}, seen[kQueues] = {};
  RecordingVirtioInterrupt interrupt;
  std::string console_output, agent_output;
  std::vector<bool> open_events;
};

TEST_F(VirtioConsoleMultiportTest, OfferedOnlyWithNamedPorts) {
  EXPECT_TRUE(console->device_features() & virtio::feature_bit(kFeatureMultiport));
  EXPECT_EQ(console->queue_count(), kQueues);
  Config c{};
  console->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c));
  EXPECT_EQ(c.max_nr_ports, 2u);
  auto plain = std::move(VirtioConsole::create(VirtioConsole::OutputSink())).value();
  EXPECT_FALSE(plain->device_features() & virtio::feature_bit(kFeatureMultiport));
  EXPECT_EQ(plain->queue_count(), 2);
}

TEST_F(VirtioConsoleMultiportTest, BadPortNamesAreRefusedAtCreation) {
  std::vector<VirtioConsole::NamedPort> ports(1);
  ports[0].name = std::string(VirtioConsole::kMaxPortNameLength + 1, 'n');
  auto made = VirtioConsole::create(VirtioConsole::OutputSink(), 64, std::move(ports));
  ASSERT_FALSE(made.ok());
  EXPECT_NE(made.error().message().find("port name"), std::string::npos);
  ports.assign(1, {});
  EXPECT_FALSE(VirtioConsole::create(VirtioConsole::OutputSink(), 64, std::move(ports)).ok());
}

TEST_F(VirtioConsoleMultiportTest, HandshakeAnnouncesTheConsoleAndTheNamedPort) {
  handshake();
  EXPECT_EQ(messages(), (std::vector<Message>{{0, kConsolePort, 1, ""},
                                              {0, kPortOpen, 1, ""},  // the terminal is always there
                                              {1, kPortName, 0, kAgentPort}}))
      << "no PORT_OPEN for the agent port: no host client yet";
  console->set_host_open(1, true);
  EXPECT_EQ(messages(), (std::vector<Message>{{1, kPortOpen, 1, ""}}));
  console->set_host_open(1, true);  // no change, no message
  console->set_host_open(1, false);
  EXPECT_EQ(messages(), (std::vector<Message>{{1, kPortOpen, 0, ""}}));
  EXPECT_TRUE(interrupt.needs_reset.empty());
}

TEST_F(VirtioConsoleMultiportTest, HostOpenBeforeTheDriverIsAnnouncedWithThePort) {
  console->set_host_open(1, true);
  handshake();
  EXPECT_EQ(messages(), (std::vector<Message>{{0, kConsolePort, 1, ""},
                                              {0, kPortOpen, 1, ""},
                                              {1, kPortName, 0, kAgentPort},
                                              {1, kPortOpen, 1, ""}}));
}

TEST_F(VirtioConsoleMultiportTest, NamedPortCarriesBytesBothWaysWhileOpen) {
  handshake();
  messages();
  console->set_host_open(1, true);
  // Host bytes wait until the guest opens the port (Linux drops them before).
  post(receive_queue_of(1));
  EXPECT_EQ(enqueue(1, "{\"execute\":\"guest-ping\"}"), 24u);
  EXPECT_TRUE(received(receive_queue_of(1)).empty());
  control(1, kPortOpen, 1);
  EXPECT_TRUE(console->guest_open(1));
  EXPECT_EQ(open_events, std::vector<bool>{true});
  EXPECT_EQ(received(receive_queue_of(1)), std::vector<std::string>{"{\"execute\":\"guest-ping\"}"});
  EXPECT_EQ(console->input_pending(1), 0u);
  // Guest bytes reach the port's sink, not the console's.
  send(transmit_queue_of(1), "{\"return\": {}}\n");
  EXPECT_EQ(agent_output, "{\"return\": {}}\n");
  EXPECT_EQ(console_output, "");
  // And the console keeps its own queues.
  send(kTransmitQueue, "login: ");
  EXPECT_EQ(console_output, "login: ");
  post(kReceiveQueue);
  EXPECT_EQ(enqueue(0, "root\r"), 5u);
  EXPECT_EQ(received(kReceiveQueue), std::vector<std::string>{"root\r"});
  control(1, kPortOpen, 0);
  EXPECT_FALSE(console->guest_open(1));
  EXPECT_EQ(open_events, (std::vector<bool>{true, false}));
}

TEST_F(VirtioConsoleMultiportTest, InputBufferPerPortIsBoundedAndSignalsSpace) {
  handshake();
  console->set_host_open(1, true);
  control(1, kPortOpen, 1);
  EXPECT_EQ(console->input_room(1), 32u);
  EXPECT_EQ(enqueue(1, std::string(40, 'q')), 32u);
  EXPECT_EQ(console->input_room(1), 0u);
  EXPECT_EQ(console->input_room(0), 64u) << "the console's buffer is its own";
  EXPECT_EQ(enqueue(7, "x"), 0u) << "no such port";
  pollfd p{console->input_space_fd(1), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);
  post(receive_queue_of(1));
  EXPECT_EQ(::poll(&p, 1, 0), 1);
  EXPECT_EQ(received(receive_queue_of(1)), std::vector<std::string>{std::string(32, 'q')});
}

TEST_F(VirtioConsoleMultiportTest, OutputWithoutAHostClientIsDroppedAndCounted) {
  handshake();
  send(transmit_queue_of(1), "nobody listens");
  EXPECT_EQ(agent_output, "");
  EXPECT_EQ(console->output_dropped(), 1u);
  EXPECT_EQ(rings[transmit_queue_of(1)]->used_idx(), 1) << "the chain still goes back";
}

TEST_F(VirtioConsoleMultiportTest, ClosingTheHostEndDiscardsItsInput) {
  handshake();
  console->set_host_open(1, true);
  EXPECT_EQ(enqueue(1, "half a request"), 14u);
  console->set_host_open(1, false);
  EXPECT_EQ(console->input_pending(1), 0u);
}

TEST_F(VirtioConsoleMultiportTest, HostileControlMessagesAreRefusedNotTrusted) {
  handshake();
  messages();
  control(7, kPortReady, 1);            // no such port
  control(0xffffffff, kPortOpen, 1);    // no such port
  control(1, kPortName, 0);             // an event only the device sends
  control(1, 0xbeef, 1);                // no such event
  send(kControlTransmitQueue, "shrt");  // shorter than a message
  EXPECT_EQ(console->control_refused(), 5u);
  // A message followed by junk counts as its header.
  ControlMessage open{1, kPortOpen, 1};
  send(kControlTransmitQueue, std::string(reinterpret_cast<const char*>(&open), sizeof open) + std::string(3000, 'j'));
  EXPECT_TRUE(console->guest_open(1));
  // PORT_READY again is not a second announcement.
  control(1, kPortReady, 1);
  EXPECT_TRUE(messages().empty());
  EXPECT_TRUE(interrupt.needs_reset.empty());
  EXPECT_EQ(rings[kControlTransmitQueue]->used_idx(), next[kControlTransmitQueue]) << "every chain went back";
}

TEST_F(VirtioConsoleMultiportTest, PortOpenBeforePortReadyIsRefused) {
  activate();
  control(1, kPortOpen, 1);
  EXPECT_FALSE(console->guest_open(1));
  EXPECT_EQ(console->control_refused(), 1u);
}

TEST_F(VirtioConsoleMultiportTest, ControlOutputWaitingForBuffersIsBounded) {
  activate();
  // A driver that provokes replies and never posts buffers for them.
  for (size_t i = 0; i < VirtioConsole::kMaxPendingControl; ++i) control(0, kDeviceReady, 1);
  EXPECT_EQ(console->control_dropped(), VirtioConsole::kMaxPendingControl);
  post(kControlReceiveQueue);
  EXPECT_EQ(messages(), (std::vector<Message>{{0, kDeviceAdd, 0, ""}}));
}

TEST_F(VirtioConsoleMultiportTest, ConsoleInputWaitsForTheConsolePortAndSizeComesAsResize) {
  console->set_size(132, 50);
  activate();
  for (int i = 0; i < 8; ++i) post(kControlReceiveQueue);
  EXPECT_EQ(enqueue(0, "early"), 5u);
  post(kReceiveQueue);
  EXPECT_TRUE(received(kReceiveQueue).empty()) << "Linux drops input for a port it has not set up";
  control(0, kDeviceReady, 1);
  control(0, kPortReady, 1);
  EXPECT_EQ(received(kReceiveQueue), std::vector<std::string>{"early"});
  const ResizeMessage size{132, 50};
  auto got = messages();
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[2], (Message{0, kConsolePort, 1, ""}));
  EXPECT_EQ(got[3], (Message{0, kResize, 0, std::string(reinterpret_cast<const char*>(&size), sizeof size)}));
  EXPECT_EQ(interrupt.config_changes, 0) << "Linux ignores the config space's size with MULTIPORT";
}

TEST_F(VirtioConsoleMultiportTest, DriverWithoutMultiportGetsThePlainConsole) {
  activate(/*multiport=*/false);
  post(kReceiveQueue);
  EXPECT_EQ(enqueue(0, "hi"), 2u);
  EXPECT_EQ(received(kReceiveQueue), std::vector<std::string>{"hi"});
  send(kTransmitQueue, "out");
  EXPECT_EQ(console_output, "out");
}

TEST_F(VirtioConsoleMultiportTest, ResetForgetsTheDriversPorts) {
  handshake();
  control(1, kPortOpen, 1);
  console->reset();
  EXPECT_FALSE(console->guest_open(1));
  EXPECT_EQ(open_events, (std::vector<bool>{true, false}));
}

TEST_F(VirtioConsoleMultiportTest, SnapshotKeepsPortsAndPendingControlMessages) {
  handshake();
  console->set_host_open(1, true);
  control(1, kPortOpen, 1);
  EXPECT_EQ(enqueue(1, "pending"), 7u);  // no receive buffer posted
  StateWriter out;
  console->save_state(out);
  const std::vector<uint8_t> bytes = out.take();

  auto restored = std::move(VirtioConsole::create(VirtioConsole::OutputSink(), 64,
                                                  {{kAgentPort, VirtioConsole::OutputSink(), nullptr, 32}}))
                      .value();
  StateReader in(bytes, "console");
  ASSERT_TRUE(restored->restore_state(in, VirtioConsole::kStateVersion).ok());
  ASSERT_TRUE(in.finish().ok());
  EXPECT_TRUE(restored->guest_open(1));
  EXPECT_EQ(restored->input_pending(1), 7u);

  // A machine without the port cannot take that snapshot, and says why.
  auto plain = std::move(VirtioConsole::create(VirtioConsole::OutputSink())).value();
  StateReader again(bytes, "console");
  auto refused = plain->restore_state(again, VirtioConsole::kStateVersion);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message().find("--qga"), std::string::npos);
}

// Version 1 (before MULTIPORT): pending input, cols, rows, size set.
TEST_F(VirtioConsoleMultiportTest, VersionOneStateStillDecodes) {
  StateWriter v1;
  v1.put<uint32_t>(2);
  v1.put<uint8_t>('o');
  v1.put<uint8_t>('k');
  v1.put<uint16_t>(100);
  v1.put<uint16_t>(30);
  v1.put_bool(true);
  const std::vector<uint8_t> bytes = v1.take();
  auto plain = std::move(VirtioConsole::create(VirtioConsole::OutputSink())).value();
  StateReader in(bytes, "console");
  ASSERT_TRUE(plain->restore_state(in, 1).ok());
  ASSERT_TRUE(in.finish().ok());
  EXPECT_EQ(plain->input_pending(), 2u);
  Config c{};
  plain->read_config(0, std::span(reinterpret_cast<uint8_t*>(&c), sizeof c));
  EXPECT_EQ(c.cols, 100);
  EXPECT_EQ(c.rows, 30);
  StateReader bad(bytes, "console");
  EXPECT_FALSE(plain->restore_state(bad, 3).ok());
}

}  // namespace
}  // namespace hostvisor
