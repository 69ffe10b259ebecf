/* Writes to the virtio console's port 0 through transmitq0 (the modern
 * virtio-pci transport, VIRTIO_F_EVENT_IDX, MSI-X completions): the line
 * HVT_VIRTIO_CONSOLE_TEXT twice, once split over a two-descriptor chain and
 * once as one buffer. The host test finds it on the device's output (for
 * hostvisor, its stdout); the kernel never prints it on the serial port. A
 * receive buffer is posted on receiveq0 too: with no input it must stay with
 * the device. */
#include "virtio.h"

const char test_scenario[] = "virtio_console";

enum { SPURIOUS_VECTOR = 0x3f, CONSOLE_VECTORS = 0x20 };
enum { RECEIVEQ0 = 0, TRANSMITQ0 = 1 };

static struct virtio_pci console;
static struct virtq receiveq, transmitq;
static char input[64];

static void transmit(const struct virtq_buffer* buffers, unsigned count) {
  const uint32_t len = virtq_transfer(&transmitq, buffers, count);
  /* The device only reads transmit buffers. */
  if (len != 0) test_fail("transmitq0: the device reports %u bytes written into an output buffer", len);
}

void test_main(const struct boot_info* info) {
  print("virtio_console: booted as %s\n", info->format_name);
  idt_install();
  lapic_enable(SPURIOUS_VECTOR);

  if (!virtio_pci_find(VIRTIO_TYPE_CONSOLE, 0, &console)) test_fail("no virtio-console on PCI bus 0");
  /* No MULTIPORT: port 0 alone, on queues 0 and 1 (5.3.2). */
  virtio_pci_start(&console, CONSOLE_VECTORS, VIRTIO_F_EVENT_IDX);
  if (!(console.features & VIRTIO_F_EVENT_IDX)) test_fail("VIRTIO_F_EVENT_IDX not offered");
  virtq_init(&receiveq, "virtio-console receiveq0", RECEIVEQ0);
  virtq_init(&transmitq, "virtio-console transmitq0", TRANSMITQ0);
  virtio_pci_setup_queue(&console, &receiveq, 0);
  virtio_pci_setup_queue(&console, &transmitq, 1);
  virtio_pci_driver_ok(&console);
  print("virtio-console at %02x:%02x.0: features 0x%lx, %u queues\n", console.function.bus, console.function.slot,
        console.features, console.num_queues);

  const struct virtq_buffer rx = {input, sizeof(input), true};
  virtq_add(&receiveq, &rx, 1);
  virtq_kick(&receiveq);

  /* Once split in two descriptors (the device must join them in order)... */
  static const char text[] = HVT_VIRTIO_CONSOLE_TEXT;
  const uint32_t length = (uint32_t)strlen(text);
  const uint32_t split = 11;
  const struct virtq_buffer chained[2] = {{(void*)text, split, false}, {(void*)(text + split), length - split, false}};
  transmit(chained, 2);
  /* ...and once whole. */
  const struct virtq_buffer whole = {(void*)text, length, false};
  transmit(&whole, 1);
  print("virtio_console: sent %u bytes in 2 chains, %u MSI-X interrupts, %u notifies (%u suppressed)\n", 2 * length,
        irq_count(transmitq.vector), transmitq.notifications, transmitq.notifications_suppressed);

  if (virtq_pending_used(&receiveq) != 0) test_fail("receiveq0: the device filled a buffer with no input");
  if (virtio_pci_config_interrupts(&console))
    test_fail("%u configuration interrupts (status 0x%02x)", virtio_pci_config_interrupts(&console),
              virtio_pci_status(&console));
  test_pass();
}
