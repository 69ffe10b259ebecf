/* Host input through the virtio console's receiveq0: the kernel posts two
 * 8-byte receive buffers, collects what the device fills (re-posting each
 * one) until a newline, checks it is HVT_VIRTIO_CONSOLE_INPUT, and sends
 * HVT_VIRTIO_CONSOLE_ECHO + the line back through transmitq0, where the host
 * test finds it. Needs the host to type into the virtio console (hostvisor:
 * --console virtio with the line on stdin). */
#include "virtio.h"

const char test_scenario[] = "virtio_console_input";

enum { SPURIOUS_VECTOR = 0x3f, CONSOLE_VECTORS = 0x20 };
enum { RECEIVEQ0 = 0, TRANSMITQ0 = 1, RX_BUFFERS = 2, RX_BUFFER_SIZE = 8, LINE_MAX = 64 };

static struct virtio_pci console;
static struct virtq receiveq, transmitq;
static char rx[RX_BUFFERS][RX_BUFFER_SIZE];
static char line[sizeof(HVT_VIRTIO_CONSOLE_ECHO) - 1 + LINE_MAX];

static uint16_t post(unsigned i) {
  const struct virtq_buffer buffer = {rx[i], RX_BUFFER_SIZE, true};
  const uint16_t head = virtq_add(&receiveq, &buffer, 1);
  virtq_kick(&receiveq);
  return head;
}

void test_main(const struct boot_info* info) {
  print("virtio_console_input: booted as %s\n", info->format_name);
  idt_install();
  lapic_enable(SPURIOUS_VECTOR);

  if (!virtio_pci_find(VIRTIO_TYPE_CONSOLE, 0, &console)) test_fail("no virtio-console on PCI bus 0");
  virtio_pci_start(&console, CONSOLE_VECTORS, VIRTIO_F_EVENT_IDX);
  virtq_init(&receiveq, "virtio-console receiveq0", RECEIVEQ0);
  virtq_init(&transmitq, "virtio-console transmitq0", TRANSMITQ0);
  virtio_pci_setup_queue(&console, &receiveq, 0);
  virtio_pci_setup_queue(&console, &transmitq, 1);
  virtio_pci_driver_ok(&console);

  uint16_t heads[RX_BUFFERS];
  for (unsigned i = 0; i < RX_BUFFERS; i++) heads[i] = post(i);

  const size_t prefix = strlen(HVT_VIRTIO_CONSOLE_ECHO);
  memcpy(line, HVT_VIRTIO_CONSOLE_ECHO, prefix);
  size_t length = 0;
  unsigned fills = 0;
  while (length == 0 || line[prefix + length - 1] != '\n') {
    struct virtq_completion done;
    virtq_wait(&receiveq, &done, 1);
    unsigned i = 0;
    while (i < RX_BUFFERS && heads[i] != done.head) i++;
    if (i == RX_BUFFERS) test_fail("receiveq0: the device returned chain %u, not a receive buffer", done.head);
    if (done.len == 0 || done.len > RX_BUFFER_SIZE)
      test_fail("receiveq0: the device reports %u bytes in an %u-byte buffer", done.len, RX_BUFFER_SIZE);
    if (length + done.len > LINE_MAX) test_fail("receiveq0: more than %u bytes without a newline", LINE_MAX);
    memcpy(line + prefix + length, rx[i], done.len);
    length += done.len;
    fills++;
    heads[i] = post(i);
  }
  line[prefix + length] = 0;
  if (strcmp(line + prefix, HVT_VIRTIO_CONSOLE_INPUT) != 0)
    test_fail("receiveq0: received %zu bytes that are not the expected line", length);
  print("virtio_console_input: received the %zu-byte line in %u buffers\n", length, fills);

  const struct virtq_buffer echo = {line, (uint32_t)(prefix + length), false};
  if (virtq_transfer(&transmitq, &echo, 1) != 0) test_fail("transmitq0: the device wrote into an output buffer");
  test_pass();
}
