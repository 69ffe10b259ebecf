/* The few libc string functions the kernels use; the compiler may also emit
 * calls to memset/memcpy on its own. */
#include "hvtest.h"

void* memset(void* dst, int c, size_t n) {
  uint8_t* d = dst;
  while (n--) *d++ = (uint8_t)c;
  return dst;
}

void* memcpy(void* dst, const void* src, size_t n) {
  uint8_t* d = dst;
  const uint8_t* s = src;
  while (n--) *d++ = *s++;
  return dst;
}

int memcmp(const void* a, const void* b, size_t n) {
  const uint8_t* x = a;
  const uint8_t* y = b;
  for (; n; n--, x++, y++) {
    if (*x != *y) return *x < *y ? -1 : 1;
  }
  return 0;
}

size_t strlen(const char* s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

int strcmp(const char* a, const char* b) {
  while (*a && *a == *b) a++, b++;
  return (uint8_t)*a - (uint8_t)*b;
}

const char* strstr(const char* haystack, const char* needle) {
  size_t n = strlen(needle);
  for (; *haystack; haystack++) {
    if (memcmp(haystack, needle, n) == 0) return haystack;
  }
  return n == 0 ? haystack : NULL;
}
