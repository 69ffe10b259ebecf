/* The placeholder default guest: a tiny kernel with a console prompt, booted
 * by a bare `hostvisor run` until the Linux default guest can run here. It
 * shows the serial console both ways, the boot information the loader passed,
 * the CMOS clock, and a clean ACPI power-off (exit status 0). */
#include "hvtest.h"

const char test_scenario[] = "demo";

/* ACPI PM1a control block (see src/arch/x86_64/acpi/acpi_tables.h). */
#define PM1A_CONTROL 0x604
#define SLP_TYP_S5 (5u << 10)
#define SLP_EN (1u << 13)

static inline void outw(uint16_t port, uint16_t value) { __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port)); }

static int serial_getc(void) {
  while (!(inb(COM1 + 5) & 0x01)) __asm__ volatile("pause");
  return inb(COM1);
}

static void read_line(char* line, size_t capacity) {
  size_t length = 0;
  for (;;) {
    int c = serial_getc();
    if (c == '\r' || c == '\n') {
      print("\n");
      break;
    }
    if ((c == 0x7f || c == 0x08) && length > 0) { /* backspace */
      length--;
      print("\b \b");
      continue;
    }
    if (c >= 0x20 && c < 0x7f && length + 1 < capacity) {
      line[length++] = (char)c;
      serial_putc((char)c);
    }
  }
  line[length] = 0;
}

static uint8_t cmos(uint8_t index) {
  outb(0x70, index);
  return inb(0x71);
}

static unsigned bcd(uint8_t v) { return (v >> 4) * 10u + (v & 0x0f); }

static void show_time(void) {
  while (cmos(0x0a) & 0x80) { /* update in progress */
  }
  const bool binary = cmos(0x0b) & 0x04;
  unsigned s = cmos(0x00), m = cmos(0x02), h = cmos(0x04), d = cmos(0x07), mo = cmos(0x08), y = cmos(0x09),
           c = cmos(0x32);
  if (!binary) {
    s = bcd((uint8_t)s), m = bcd((uint8_t)m), h = bcd((uint8_t)h), d = bcd((uint8_t)d), mo = bcd((uint8_t)mo);
    y = bcd((uint8_t)y), c = bcd((uint8_t)c);
  }
  print("%u%02u-%02u-%02u %02u:%02u:%02u (CMOS clock, UTC)\n", c, y, mo, d, h, m, s);
}

static void show_info(const struct boot_info* info) {
  print("booted as %s; command line: \"%s\"\n", info->format_name, info->cmdline ? info->cmdline : "");
  uint64_t usable = 0;
  for (uint32_t i = 0; i < info->range_count; i++) {
    const struct mem_range* r = &info->ranges[i];
    print("  %016lx-%016lx %s\n", (unsigned long)r->addr, (unsigned long)(r->addr + r->size - 1),
          r->type == MEM_USABLE ? "usable" : "reserved");
    if (r->type == MEM_USABLE) usable += r->size;
  }
  print("usable RAM: %lu KiB\n", (unsigned long)(usable / 1024));
}

static void help(void) {
  print("commands: help, info, time, echo TEXT, reset, poweroff (Ctrl-A x quits hostvisor)\n");
}

void test_main(const struct boot_info* info) {
  print("\nhostvisor demo guest, booted as %s.\n", info->format_name);
  print("This small kernel stands in for the Linux default guest.\n");
  help();
  char line[128];
  for (;;) {
    print("demo> ");
    read_line(line, sizeof line);
    if (line[0] == 0) continue;
    if (strcmp(line, "help") == 0) {
      help();
    } else if (strcmp(line, "info") == 0) {
      show_info(info);
    } else if (strcmp(line, "time") == 0) {
      show_time();
    } else if (line[0] == 'e' && line[1] == 'c' && line[2] == 'h' && line[3] == 'o' && (line[4] == ' ' || !line[4])) {
      print("%s\n", line[4] ? line + 5 : "");
    } else if (strcmp(line, "reset") == 0) {
      print("resetting through the i8042\n");
      outb(0x64, 0xfe);
    } else if (strcmp(line, "poweroff") == 0) {
      print("powering off through ACPI\n");
      outw(PM1A_CONTROL, SLP_TYP_S5 | SLP_EN);
      halt_forever();
    } else {
      print("%s: unknown command; try help\n", line);
    }
  }
}
