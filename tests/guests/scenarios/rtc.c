/* Reads the CMOS clock the way a BIOS-less kernel does: wait for the update
 * cycle to finish (UIP clear), read the time registers, and check they are
 * valid BCD (or binary, per register B) and a date no earlier than 2024. */
#include "hvtest.h"

const char test_scenario[] = "rtc";

enum { CMOS_INDEX = 0x70, CMOS_DATA = 0x71 };
enum {
  SECONDS = 0x00,
  MINUTES = 0x02,
  HOURS = 0x04,
  DAY = 0x07,
  MONTH = 0x08,
  YEAR = 0x09,
  REG_A = 0x0a,
  REG_B = 0x0b,
  CENTURY = 0x32
};
enum { REG_A_UIP = 0x80, REG_B_24H = 0x02, REG_B_BINARY = 0x04 };

static uint8_t cmos(uint8_t index) {
  outb(CMOS_INDEX, index); /* bit 7 clear: NMIs stay enabled */
  return inb(CMOS_DATA);
}

static bool valid_bcd(uint8_t v) { return (v & 0x0f) <= 9 && (v >> 4) <= 9; }
static unsigned from_bcd(uint8_t v) { return (v >> 4) * 10u + (v & 0x0f); }

struct rtc_time {
  uint8_t sec, min, hour, day, mon, year, century;
};

static void read_time(struct rtc_time* t) {
  int spins = 0;
  while (cmos(REG_A) & REG_A_UIP) {
    if (++spins > 100000) test_fail("RTC update-in-progress never cleared");
  }
  t->sec = cmos(SECONDS);
  t->min = cmos(MINUTES);
  t->hour = cmos(HOURS);
  t->day = cmos(DAY);
  t->mon = cmos(MONTH);
  t->year = cmos(YEAR);
  t->century = cmos(CENTURY);
}

void test_main(const struct boot_info* info) {
  print("rtc: booted as %s\n", info->format_name);
  uint8_t reg_b = cmos(REG_B);
  bool binary = reg_b & REG_B_BINARY;
  /* Read until two reads agree, so a rollover between registers is not mistaken for a bad value. */
  struct rtc_time t, again;
  read_time(&t);
  for (int tries = 0;; tries++) {
    read_time(&again);
    if (memcmp(&t, &again, sizeof(t)) == 0) break;
    if (tries == 5) test_fail("RTC time keeps changing between reads");
    t = again;
  }
  print("rtc: register B 0x%02x, raw %02x:%02x:%02x %02x-%02x-%02x century %02x\n", reg_b, t.hour, t.min, t.sec, t.year,
        t.mon, t.day, t.century);
  uint8_t hour = t.hour & 0x7f; /* bit 7 is PM in 12-hour mode */
  unsigned sec, min, hr, day, mon, year, century = 0;
  if (binary) {
    sec = t.sec, min = t.min, hr = hour, day = t.day, mon = t.mon, year = t.year, century = t.century;
  } else {
    const uint8_t fields[] = {t.sec, t.min, hour, t.day, t.mon, t.year};
    for (unsigned i = 0; i < sizeof(fields); i++) {
      if (!valid_bcd(fields[i])) test_fail("RTC field %u is 0x%02x, not BCD", i, fields[i]);
    }
    sec = from_bcd(t.sec), min = from_bcd(t.min), hr = from_bcd(hour), day = from_bcd(t.day), mon = from_bcd(t.mon);
    year = from_bcd(t.year);
    if (valid_bcd(t.century)) century = from_bcd(t.century);
  }
  bool h24 = reg_b & REG_B_24H;
  if (sec > 59 || min > 59 || day < 1 || day > 31 || mon < 1 || mon > 12) test_fail("RTC time out of range");
  if (h24 ? hr > 23 : (hr < 1 || hr > 12)) test_fail("RTC hour %u out of range (%s mode)", hr, h24 ? "24h" : "12h");
  /* The century register (0x32) is optional; without it assume the 2000s. */
  unsigned full_year = (century >= 19 && century <= 30) ? century * 100 + year : 2000 + year;
  print("rtc: %04u-%02u-%02u %02u:%02u:%02u\n", full_year, mon, day, hr, min, sec);
  if (full_year < 2024) test_fail("RTC year %u is before 2024", full_year);
  test_pass();
}
