// Fuzz target: a qcow2 file as hostile input. The image is opened (header,
// L1, refcount table, snapshot table), read, checked, repaired, and written
// to; every path must end in data or an error, never a crash, an
// out-of-bounds access or an endless loop.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "block/image_open.h"
#include "block/qcow2/check.h"
#include "block/qcow2/image.h"

using namespace hostvisor::block;

namespace {

struct MemFile {
  int fd;
  std::string path;
  MemFile(const uint8_t* data, size_t size) {
    fd = memfd_create("qcow2-fuzz", MFD_CLOEXEC);
    if (fd >= 0 && size > 0 && write(fd, data, size) != static_cast<ssize_t>(size)) {
      close(fd);
      fd = -1;
    }
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  ~MemFile() {
    if (fd >= 0) close(fd);
  }
};

void exercise(const uint8_t* data, size_t size, bool writable) {
  MemFile f(data, size);
  if (f.fd < 0) return;
  OpenOptions o;
  o.format = ImageFormat::kQcow2;
  o.writable = writable;
  o.open_backing = false;
  o.queue_depth = 4;
  auto dev = open_image(f.path, o);
  if (!dev.ok()) return;
  BlockDevice& d = **dev;
  uint64_t vsize = d.virtual_size();
  std::vector<uint8_t> buf(256 * 1024);
  (void)d.read(0, buf.data(), std::min<uint64_t>(vsize, buf.size()));
  if (vsize > buf.size()) (void)d.read(vsize - 65536, buf.data(), 65536);
  if (!writable) return;
  std::vector<uint8_t> pattern(70000, 0x5a);
  (void)d.write(std::min<uint64_t>(vsize, 12345) / 2, pattern.data(), std::min<uint64_t>(vsize / 2, pattern.size()));
  (void)d.write_zeroes(0, std::min<uint64_t>(vsize, 1 << 20));
  (void)d.discard(vsize / 2, vsize / 4);
  (void)d.flush();
  auto* q = dynamic_cast<Qcow2Image*>(&d);
  if (q != nullptr && q->snapshots().size() < 4) (void)q->create_snapshot("fuzz");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  exercise(data, size, false);
  exercise(data, size, true);
  {
    MemFile f(data, size);
    if (f.fd >= 0) (void)check_qcow2(f.path, false);
  }
  {
    MemFile f(data, size);
    if (f.fd >= 0) (void)check_qcow2(f.path, true);
  }
  return 0;
}
