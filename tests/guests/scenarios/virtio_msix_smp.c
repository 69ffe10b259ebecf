/* MSI-X messages reach the CPU their address names (0xFEE00000 | APIC ID
 * << 12), also after the entry is retargeted: with two CPUs, the virtio
 * console's transmitq entry first points at the AP, then back at the BSP,
 * and each completion's interrupt must be taken on that CPU. On KVM this is
 * the destination in the irqfd's MSI route. Sends HVT_VIRTIO_CONSOLE_TEXT
 * once per CPU. Run with --cpus 2 (QEMU: -smp 2). */
#include "virtio.h"

const char test_scenario[] = "virtio_msix_smp";

enum { SPURIOUS_VECTOR = 0x3f, CONSOLE_VECTORS = 0x20 };
enum { RECEIVEQ0 = 0, TRANSMITQ0 = 1, TRANSMITQ_ENTRY = 1 };

static struct virtio_pci console;
static struct virtq receiveq, transmitq;
static volatile uint32_t ap_ready;
static volatile uint32_t ap_apic_id;
static volatile uint32_t handled_on = 0xffffffffu; /* APIC ID of the CPU that took the last transmitq interrupt */
static uint8_t ap_stack[4096] __attribute__((aligned(16)));

/* The AP takes interrupts on the shared IDT and otherwise sleeps. */
__attribute__((noreturn)) void ap_main(void);
void ap_main(void) {
  idt_use();
  lapic_enable(SPURIOUS_VECTOR);
  ap_apic_id = lapic_id();
  __atomic_store_n(&ap_ready, 1, __ATOMIC_SEQ_CST);
  for (;;) __asm__ volatile("sti; hlt" ::: "memory");
}

/* Only an interrupt that announces new used entries counts: QEMU also
 * signals transmitq when the driver sets DRIVER_OK, with nothing in it. */
static void record_cpu(struct virtq* q) {
  if (*(volatile uint16_t*)&q->used.idx != q->used_idx_at_interrupt) handled_on = lapic_id();
}

static void transmit_on(uint32_t apic_id, const char* which) {
  msix_route(&console.msix, 1 + TRANSMITQ_ENTRY, (uint8_t)apic_id, transmitq.vector);
  handled_on = 0xffffffffu;
  static const char text[] = HVT_VIRTIO_CONSOLE_TEXT;
  const struct virtq_buffer buffer = {(void*)text, (uint32_t)strlen(text), false};
  virtq_transfer(&transmitq, &buffer, 1); /* returns once the interrupt was counted, on whichever CPU */
  if (handled_on != apic_id)
    test_fail("the transmitq interrupt aimed at the %s (APIC ID %u) was taken on APIC ID %u", which, apic_id,
              handled_on);
  print("virtio_msix_smp: the %s (APIC ID %u) took the transmitq interrupt\n", which, apic_id);
}

void test_main(const struct boot_info* info) {
  print("virtio_msix_smp: booted as %s\n", info->format_name);
  idt_install();
  lapic_enable(SPURIOUS_VECTOR);
  const uint32_t bsp_apic_id = lapic_id();

  ap_start(ap_main, ap_stack + sizeof(ap_stack), &ap_ready);
  for (long spins = 0; spins < 3000000 && !__atomic_load_n(&ap_ready, __ATOMIC_SEQ_CST); spins++)
    __asm__ volatile("pause");
  if (!ap_ready) test_fail("the AP never came up after INIT/SIPI (is --cpus 2 set?)");
  if (ap_apic_id == bsp_apic_id) test_fail("the AP reports the BSP's APIC ID %u", bsp_apic_id);

  if (!virtio_pci_find(VIRTIO_TYPE_CONSOLE, 0, &console)) test_fail("no virtio-console on PCI bus 0");
  virtio_pci_start(&console, CONSOLE_VECTORS, 0);
  virtq_init(&receiveq, "virtio-console receiveq0", RECEIVEQ0);
  virtq_init(&transmitq, "virtio-console transmitq0", TRANSMITQ0);
  virtio_pci_setup_queue(&console, &receiveq, 0);
  virtio_pci_setup_queue(&console, &transmitq, TRANSMITQ_ENTRY);
  transmitq.on_interrupt = record_cpu;
  virtio_pci_driver_ok(&console);
  /* Take whatever DRIVER_OK raised now, before the entry is retargeted. */
  interrupts_on();
  for (int i = 0; i < 100; i++) __asm__ volatile("pause");
  interrupts_off();

  transmit_on(ap_apic_id, "AP");
  transmit_on(bsp_apic_id, "BSP");
  test_pass();
}
