/* COM1 output, polled, and a printf subset: %s %c %d %i %u %x %X %p %%, with
 * an optional '0' flag, a width and the l / ll / z length modifiers. */
#include "hvtest.h"

enum { UART_THR = 0, UART_LSR = 5, LSR_THRE = 0x20 };

void serial_putc(char c) {
  /* Bounded, so a UART that never reports THRE slows output down instead of
   * hanging the kernel before it can report. */
  for (int spins = 0; spins < 100000 && !(inb(COM1 + UART_LSR) & LSR_THRE); spins++) {
  }
  outb(COM1 + UART_THR, (uint8_t)c);
}

static void put_string(const char* s) {
  if (!s) s = "(null)";
  while (*s) serial_putc(*s++);
}

static void put_unsigned(uint64_t value, unsigned base, bool upper, int width, char pad) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  char buf[24];
  int n = 0;
  do {
    buf[n++] = digits[value % base];
    value /= base;
  } while (value);
  while (n < width && n < (int)sizeof(buf)) buf[n++] = pad;
  while (n) serial_putc(buf[--n]);
}

void vprint(const char* fmt, va_list args) {
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      serial_putc(*fmt);
      continue;
    }
    fmt++;
    char pad = ' ';
    if (*fmt == '0') {
      pad = '0';
      fmt++;
    }
    int width = 0;
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    int longs = 0;
    while (*fmt == 'l' || *fmt == 'z') {
      longs++;
      fmt++;
    }
    switch (*fmt) {
      case 's': put_string(va_arg(args, const char*)); break;
      case 'c': serial_putc((char)va_arg(args, int)); break;
      case 'd':
      case 'i': {
        int64_t v = longs ? va_arg(args, int64_t) : va_arg(args, int);
        if (v < 0) {
          serial_putc('-');
          put_unsigned((uint64_t)0 - (uint64_t)v, 10, false, width ? width - 1 : 0, pad);
        } else {
          put_unsigned((uint64_t)v, 10, false, width, pad);
        }
        break;
      }
      case 'u': put_unsigned(longs ? va_arg(args, uint64_t) : va_arg(args, unsigned), 10, false, width, pad); break;
      case 'x':
      case 'X':
        put_unsigned(longs ? va_arg(args, uint64_t) : va_arg(args, unsigned), 16, *fmt == 'X', width, pad);
        break;
      case 'p':
        put_string("0x");
        put_unsigned((uint64_t)(uintptr_t)va_arg(args, void*), 16, false, 0, '0');
        break;
      case '%': serial_putc('%'); break;
      case '\0': return;
      default:
        serial_putc('%');
        serial_putc(*fmt);
        break;
    }
  }
}

void print(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vprint(fmt, args);
  va_end(args);
}
