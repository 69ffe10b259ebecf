// The virtio console's MULTIPORT side driven by a scripted, hostile driver:
// control messages of any port, event and value (and any length), receive
// buffers of any size, raw writes over the rings, host clients coming and
// going, resizes, resets, and a save/restore round trip. The device must
// refuse what is wrong and never crash, touch memory outside guest RAM, or
// let its state stop round-tripping. A second mode feeds the input to the
// state decoder as a snapshot payload of either version.
//
// Input: [0] bit 0 the decoder mode (then [1] the version, the rest the
// payload); otherwise a list of operations, each an opcode byte and its
// operands (see the switch).
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "devices/virtio/console/virtio_console.h"
#include "devices/virtio/testing/recording_virtio_interrupt.h"
#include "devices/virtio/testing/virtqueue_test_driver.h"
#include "devices/virtio/virtio_constants.h"
#include "fuzz/fuzz_input.h"

using namespace hostvisor;
using hostvisor::fuzz::take;

namespace {

constexpr uint64_t kRamSize = 64 * 1024;
constexpr uint16_t kQueueSize = 16;
constexpr uint16_t kQueues = 8;  // port 0, control, ports 1 and 2
constexpr uint64_t kBuffers = 0x10000 - 0x4000;

std::shared_ptr<VirtioConsole> make_console() {
  std::vector<VirtioConsole::NamedPort> ports;
  ports.push_back({"org.qemu.guest_agent.0", [](std::span<const uint8_t>) { return true; }, nullptr, 256});
  ports.push_back({"second", [](std::span<const uint8_t>) { return false; }, [](bool) {}, 16});
  auto made = VirtioConsole::create(VirtioConsole::OutputSink([](std::span<const uint8_t>) { return true; }), 256, std::move(ports));
  if (!made) __builtin_trap();
  return *made;
}

struct Driver {
  explicit Driver(GuestMemory& m) : memory(m) {}
  GuestMemory& memory;
  std::vector<std::unique_ptr<testing::VirtqueueTestDriver>> rings;
  Virtqueue queues[kQueues];
  bool enabled[kQueues] = {};
  uint16_t next = 0;

  bool activate(VirtioConsole& console, VirtioInterrupt& interrupt, bool multiport) {
    rings.clear();
    uint64_t features = console.device_features() | virtio::feature_bit(virtio::kFeatureVersion1);
    if (!multiport) features &= ~virtio::feature_bit(virtio_console::kFeatureMultiport);
    for (uint16_t q = 0; q < kQueues; ++q) {
      rings.push_back(std::make_unique<testing::VirtqueueTestDriver>(memory, kQueueSize, 0x1800ull * q));
      auto queue = Virtqueue::create(memory, rings[q]->layout(), features);
      if (!queue) return false;
      queues[q] = std::move(*queue);
      enabled[q] = multiport || q < 2;
    }
    return console.activate(VirtioActivation{&memory, features, queues, enabled, &interrupt}).ok();
  }
  // A one-buffer chain on `queue` holding `bytes` (device-readable) or
  // `length` writable bytes.
  void add(uint16_t queue, std::span<const uint8_t> bytes, uint32_t length, bool writable) {
    const uint64_t at = kBuffers + 0x400ull * (next % 16);
    const uint16_t head = next++ % kQueueSize;
    length = std::min<uint32_t>(length, 0x400);
    if (!writable) (void)memory.write(GuestAddress(at), bytes.first(std::min<size_t>(bytes.size(), length)));
    rings[queue]->add_chain(head, {{at, length, writable}});
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t mode = take<uint8_t>(data, size);
  auto console = make_console();
  if (mode & 1) {
    const uint32_t version = take<uint8_t>(data, size) % 4;
    StateReader in(std::span(data, size), "fuzz");
    (void)console->restore_state(in, version);
    return 0;
  }
  auto memory = std::move(GuestMemory::create({{GuestAddress(0), kRamSize}})).value();
  testing::RecordingVirtioInterrupt interrupt;
  Driver driver(memory);
  if (!driver.activate(*console, interrupt, (mode & 2) == 0)) return 0;
  uint8_t scratch[0x400] = {};
  for (int ops = 0; size > 0 && ops < 512; ++ops) {
    switch (take<uint8_t>(data, size) % 9) {
      case 0: {  // the driver sends a control message, with extra bytes
        virtio_console::ControlMessage message{};
        message.id = take<uint8_t>(data, size) % 5;  // mostly real ports, some not
        if (message.id == 4) message.id = take<uint32_t>(data, size);
        message.event = take<uint8_t>(data, size) % 10;
        message.value = take<uint8_t>(data, size) % 3;
        const uint16_t length = take<uint16_t>(data, size) % 0x400;
        std::memcpy(scratch, &message, sizeof message);
        driver.add(virtio_console::kControlTransmitQueue, std::span(scratch, sizeof scratch), length, false);
        (void)console->process_queue(virtio_console::kControlTransmitQueue);
        break;
      }
      case 1: {  // the driver posts a receive buffer on any queue
        const uint16_t queue = take<uint8_t>(data, size) % kQueues;
        driver.add(queue, {}, take<uint16_t>(data, size), true);
        (void)console->process_queue(queue);
        break;
      }
      case 2: {  // the driver writes on a port
        const uint16_t queue = take<uint8_t>(data, size) % kQueues;
        const uint16_t length = take<uint8_t>(data, size);
        driver.add(queue, std::span(scratch, sizeof scratch), length, false);
        (void)console->process_queue(queue);
        break;
      }
      case 3: {  // hostile bytes anywhere in RAM, rings included
        const uint16_t at = take<uint16_t>(data, size);
        const uint8_t n = take<uint8_t>(data, size) % 32;
        const size_t have = std::min<size_t>(n, size);
        (void)memory.write(GuestAddress(at), std::span(data, std::min<size_t>(have, kRamSize - at)));
        data += have;
        size -= have;
        (void)console->process_queue(take<uint8_t>(data, size) % kQueues);
        break;
      }
      case 4: {  // host input
        const uint32_t port = take<uint8_t>(data, size) % 4;
        const size_t n = std::min<size_t>(take<uint8_t>(data, size), size);
        (void)console->enqueue_input(port, std::span(data, n));
        data += n;
        size -= n;
        break;
      }
      case 5: {
        const uint32_t port = take<uint8_t>(data, size) % 4;
        console->set_host_open(port, take<uint8_t>(data, size) & 1);
        break;
      }
      case 6:
        console->set_size(take<uint16_t>(data, size), take<uint16_t>(data, size));
        break;
      case 7: {  // the state round-trips into a device built the same way
        StateWriter out;
        console->save_state(out);
        const std::vector<uint8_t> bytes = out.take();
        auto copy = make_console();
        StateReader in(bytes, "fuzz");
        if (!copy->restore_state(in, VirtioConsole::kStateVersion).ok() || !in.finish().ok()) __builtin_trap();
        break;
      }
      case 8:  // a driver reset and a new driver
        console->reset();
        driver.next = 0;
        std::memset(memory.host_pointer(GuestAddress(0), 0x1800 * kQueues), 0, 0x1800 * kQueues);
        if (!driver.activate(*console, interrupt, take<uint8_t>(data, size) & 1)) return 0;
        break;
    }
  }
  console->reset();
  return 0;
}
