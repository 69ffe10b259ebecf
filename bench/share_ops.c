/* The file operations bench/share.bench.sh times, run the same way on the
 * host directly and in the guest on the share (built static by the script
 * and handed to the guest through the share itself). Prints seconds.
 *   share_ops write FILE MIB   sequential 1 MiB writes, then fsync
 *   share_ops read FILE        sequential 1 MiB reads to the end
 *   share_ops meta DIR N       N x (create, stat, unlink) of small files */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  static char buffer[1 << 20];
  if (argc < 3) return 2;
  const double start = now();
  if (strcmp(argv[1], "write") == 0 && argc == 4) {
    memset(buffer, 0x5a, sizeof buffer);
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return perror(argv[2]), 1;
    for (long i = 0; i < atol(argv[3]); ++i)
      if (write(fd, buffer, sizeof buffer) != (ssize_t)sizeof buffer) return perror("write"), 1;
    if (fsync(fd) != 0 || close(fd) != 0) return perror("fsync"), 1;
  } else if (strcmp(argv[1], "read") == 0) {
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return perror(argv[2]), 1;
    ssize_t got;
    while ((got = read(fd, buffer, sizeof buffer)) > 0) {
    }
    if (got < 0) return perror("read"), 1;
    close(fd);
  } else if (strcmp(argv[1], "meta") == 0 && argc == 4) {
    char path[4096];
    struct stat st;
    for (long i = 0; i < atol(argv[3]); ++i) {
      snprintf(path, sizeof path, "%s/f%ld", argv[2], i);
      int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (fd < 0 || close(fd) != 0) return perror(path), 1;
      if (stat(path, &st) != 0 || unlink(path) != 0) return perror(path), 1;
    }
  } else {
    return 2;
  }
  printf("%.3f\n", now() - start);
  return 0;
}
