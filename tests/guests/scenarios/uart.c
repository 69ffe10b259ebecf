/* Checks the 16550 at COM1 from the guest side: scratch register, divisor
 * latch, loopback (data and modem-status lines), IIR with and without FIFOs.
 * Nothing is printed while the UART is in loopback or DLAB mode. */
#include "hvtest.h"

const char test_scenario[] = "uart";

enum {
  RBR = 0,
  THR = 0,
  DLL = 0,
  IER = 1,
  DLM = 1,
  IIR = 2,
  FCR = 2,
  LCR = 3,
  MCR = 4,
  LSR = 5,
  MSR = 6,
  SCR = 7,
  LCR_8N1 = 0x03,
  LCR_DLAB = 0x80,
  MCR_LOOP = 0x10,
  LSR_DR = 0x01,
  LSR_THRE = 0x20,
  LSR_TEMT = 0x40,
};

static uint8_t reg(int r) { return inb(COM1 + r); }
static void set(int r, uint8_t v) { outb(COM1 + r, v); }

/* Leaves the UART usable for the console again before failing. */
static void restore(void) {
  set(MCR, 0x03);
  set(LCR, LCR_8N1);
  set(FCR, 0x07);
  set(IER, 0);
}

#define CHECK(cond, ...)      \
  do {                        \
    if (!(cond)) {            \
      restore();              \
      test_fail(__VA_ARGS__); \
    }                         \
  } while (0)

static void check_scratch(void) {
  static const uint8_t values[] = {0x55, 0xaa, 0x00, 0xff, 0x5a};
  for (unsigned i = 0; i < sizeof(values); i++) {
    set(SCR, values[i]);
    uint8_t got = reg(SCR);
    CHECK(got == values[i], "scratch register read 0x%02x after writing 0x%02x", got, values[i]);
  }
  print("scratch register ok\n");
}

static void check_divisor_latch(void) {
  set(LCR, LCR_8N1 | LCR_DLAB);
  set(DLL, 0x0c); /* 9600 baud */
  set(DLM, 0x01);
  uint8_t lcr = reg(LCR), dll = reg(DLL), dlm = reg(DLM);
  set(DLL, 0x01); /* back to 115200 */
  set(DLM, 0x00);
  uint8_t dll2 = reg(DLL), dlm2 = reg(DLM);
  set(LCR, LCR_8N1);
  CHECK(lcr == (LCR_8N1 | LCR_DLAB), "LCR read 0x%02x after writing 0x83", lcr);
  CHECK(dll == 0x0c && dlm == 0x01, "divisor latch read 0x%02x%02x after writing 0x010c", dlm, dll);
  CHECK(dll2 == 0x01 && dlm2 == 0x00, "divisor latch read 0x%02x%02x after writing 0x0001", dlm2, dll2);
  /* With DLAB clear, offset 1 is IER again, not DLM. */
  set(IER, 0);
  CHECK(reg(IER) == 0, "IER read 0x%02x after writing 0 with DLAB clear", reg(IER));
  print("divisor latch ok\n");
}

static void check_iir(void) {
  set(IER, 0);
  set(FCR, 0x00);
  uint8_t no_fifo = reg(IIR);
  set(FCR, 0x07); /* enable, clear both FIFOs */
  uint8_t fifo = reg(IIR);
  CHECK(no_fifo == 0x01, "IIR 0x%02x with FIFOs off, expected 0x01 (no interrupt)", no_fifo);
  CHECK(fifo == 0xc1, "IIR 0x%02x with FIFOs on, expected 0xc1 (FIFOs enabled, no interrupt)", fifo);
  print("IIR ok\n");
}

static void check_loopback(void) {
  const char* text = HVT_UART_LOOPBACK_TEXT;
  const size_t n = strlen(text);
  char got[32];
  uint8_t lsr_before = 0, lsr_after = 0, msr = 0, msr2 = 0;
  size_t received = 0;

  set(FCR, 0x07);
  set(MCR, MCR_LOOP | 0x0a); /* loopback, RTS and OUT2 */
  /* In loopback the modem outputs feed the inputs: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD. */
  msr = reg(MSR) & 0xf0;
  set(MCR, MCR_LOOP | 0x05); /* DTR and OUT1 */
  msr2 = reg(MSR) & 0xf0;
  while (reg(LSR) & LSR_DR) (void)reg(RBR); /* drain */
  lsr_before = reg(LSR);
  for (size_t i = 0; i < n; i++) set(THR, (uint8_t)text[i]);
  for (; received < n && received < sizeof(got) - 1; received++) {
    if (!(reg(LSR) & LSR_DR)) break;
    got[received] = (char)reg(RBR);
  }
  got[received] = 0;
  lsr_after = reg(LSR);
  set(MCR, 0x03); /* loopback off, DTR and RTS as a console would leave them */

  CHECK(msr == 0x90, "MSR 0x%02x in loopback with RTS+OUT2, expected CTS+DCD (0x90)", msr);
  CHECK(msr2 == 0x60, "MSR 0x%02x in loopback with DTR+OUT1, expected DSR+RI (0x60)", msr2);
  CHECK(!(lsr_before & LSR_DR), "LSR 0x%02x reports data before anything was sent", lsr_before);
  CHECK(received == n && strcmp(got, text) == 0, "loopback returned \"%s\" (%zu bytes), expected \"%s\"", got, received,
        text);
  CHECK(!(lsr_after & LSR_DR), "LSR 0x%02x still reports data after all bytes were read", lsr_after);
  CHECK((lsr_after & (LSR_THRE | LSR_TEMT)) == (LSR_THRE | LSR_TEMT), "LSR 0x%02x: transmitter not empty", lsr_after);
  print("loopback ok: %zu bytes came back, modem lines ok\n", received);
}

void test_main(const struct boot_info* info) {
  print("uart: booted as %s\n", info->format_name);
  check_scratch();
  check_divisor_latch();
  check_iir();
  check_loopback();
  restore();
  test_pass();
}
