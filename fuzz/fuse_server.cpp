// The FUSE server on hostile requests, as a hostile guest kernel could send
// them over virtio-fs: any opcode, any node ID and file handle (those handed
// out are likely picks), any arguments, against a scratch share that holds
// files, a directory and symlinks planted to point out of it (absolute and
// relative). A canary directory beside the share must come out of every
// input unchanged: the same entries, the same content, the same mode.
//
// Input: [0] flags (1: INIT first, 2: reset the session at the end), then
// records until the input ends: [u8 opcode][u8 node pick][u8 fh pick]
// [u16 argument length][arguments]. A pick below 8 names the root or a
// recently handed-out ID; above, the byte itself (an ID never handed out).
// An opcode byte of 255 is the host's move instead: it swaps the share's
// directory "dir" and its symlink "rel" (to ../canary) with one atomic
// rename exchange, so a symlink is swapped in between requests while the
// node IDs looked up before it are still in hand.
#include "fs/fuse_server.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"

using namespace hostvisor;

namespace {

namespace stdfs = std::filesystem;

struct Scratch {
  stdfs::path base, share, canary;
  Scratch() {
    char tmpl[] = "/tmp/hv-fuzz-fuse-XXXXXX";
    if (!::mkdtemp(tmpl)) __builtin_trap();
    base = tmpl;
    share = base / "share";
    canary = base / "canary";
    stdfs::create_directories(canary / "inner");
    std::ofstream(canary / "secret") << "host secret";
    populate();
  }
  ~Scratch() {
    std::error_code ec;
    stdfs::remove_all(base, ec);
  }
  // The share's starting contents, made again when it has grown.
  void populate() {
    std::error_code ec;
    stdfs::remove_all(share, ec);
    stdfs::create_directories(share / "dir" / "sub");
    std::ofstream(share / "file") << "some bytes in a file";
    std::ofstream(share / "dir" / "inner") << "x";
    stdfs::create_symlink(canary, share / "abs");
    stdfs::create_symlink("../canary", share / "rel");
    stdfs::create_symlink("../../canary/secret", share / "dir" / "up");
    stdfs::create_symlink("/etc/passwd", share / "passwd");
  }
  // Trap unless the canary is exactly as made and nothing new sits beside the share.
  void check() const {
    std::ifstream in(canary / "secret");
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (content != "host secret") __builtin_trap();
    struct stat st {};
    if (::stat((canary / "secret").c_str(), &st) != 0 || (st.st_mode & 07777) != 0644) __builtin_trap();
    size_t entries = 0;
    for (const auto& e : stdfs::directory_iterator(canary)) {
      (void)e;
      ++entries;
    }
    if (entries != 2 || !stdfs::is_directory(canary / "inner") || !stdfs::is_empty(canary / "inner")) __builtin_trap();
    size_t beside = 0;
    for (const auto& e : stdfs::directory_iterator(base)) {
      (void)e;
      ++beside;
    }
    if (beside != 2) __builtin_trap();
  }
};

Scratch& scratch() {
  static Scratch s;
  return s;
}

constexpr uint32_t kOpcodes[] = {FUSE_LOOKUP,
                                 FUSE_FORGET,
                                 FUSE_GETATTR,
                                 FUSE_SETATTR,
                                 FUSE_READLINK,
                                 FUSE_SYMLINK,
                                 FUSE_MKNOD,
                                 FUSE_MKDIR,
                                 FUSE_UNLINK,
                                 FUSE_RMDIR,
                                 FUSE_RENAME,
                                 FUSE_LINK,
                                 FUSE_OPEN,
                                 FUSE_READ,
                                 FUSE_WRITE,
                                 FUSE_STATFS,
                                 FUSE_RELEASE,
                                 FUSE_FSYNC,
                                 FUSE_SETXATTR,
                                 FUSE_GETXATTR,
                                 FUSE_LISTXATTR,
                                 FUSE_REMOVEXATTR,
                                 FUSE_FLUSH,
                                 FUSE_INIT,
                                 FUSE_OPENDIR,
                                 FUSE_READDIR,
                                 FUSE_RELEASEDIR,
                                 FUSE_FSYNCDIR,
                                 FUSE_GETLK,
                                 FUSE_SETLK,
                                 FUSE_SETLKW,
                                 FUSE_ACCESS,
                                 FUSE_CREATE,
                                 FUSE_INTERRUPT,
                                 FUSE_DESTROY,
                                 FUSE_BATCH_FORGET,
                                 FUSE_FALLOCATE,
                                 FUSE_READDIRPLUS,
                                 FUSE_RENAME2,
                                 FUSE_LSEEK,
                                 FUSE_COPY_FILE_RANGE,
                                 FUSE_SYNCFS,
                                 FUSE_IOCTL,
                                 FUSE_POLL,
                                 FUSE_TMPFILE,
                                 FUSE_SETUPMAPPING,
                                 0,
                                 9999};

constexpr uint8_t kHostSwap = 255;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Scratch& s = scratch();
  static unsigned runs = 0;
  if (++runs % 500 == 0) s.populate();
  auto opened = fs::FuseServer::open(s.share.string(), {.max_nodes = 256, .max_handles = 64});
  if (!opened) __builtin_trap();
  auto server = std::move(opened).value();
  // A lock wait tries once: one thread here, so nothing would ever free it.
  server->stop_waiting();
  const uint8_t flags = fuzz::take<uint8_t>(data, size);
  std::vector<uint64_t> nodes = {1}, handles = {1};
  uint64_t unique = 0;
  auto send = [&](uint32_t opcode, uint64_t nodeid, std::vector<uint8_t> args) {
    fuse_in_header h{};
    h.len = static_cast<uint32_t>(sizeof h + args.size());
    h.opcode = opcode;
    h.unique = ++unique;
    h.nodeid = nodeid;
    std::vector<uint8_t> request(sizeof h);
    std::memcpy(request.data(), &h, sizeof h);
    request.insert(request.end(), args.begin(), args.end());
    auto reply = server->handle(request, fs::FuseServer::kMaxReply);
    if (!reply) return;
    if (reply->size() < sizeof(fuse_out_header) || reply->size() > fs::FuseServer::kMaxReply) __builtin_trap();
    fuse_out_header oh;
    std::memcpy(&oh, reply->data(), sizeof oh);
    if (oh.len != reply->size() || oh.unique != h.unique || oh.error > 0) __builtin_trap();
    // Remember what was handed out, so later records can pick it.
    if (oh.error == 0 &&
        (opcode == FUSE_LOOKUP || opcode == FUSE_MKDIR || opcode == FUSE_CREATE || opcode == FUSE_SYMLINK ||
         opcode == FUSE_LINK || opcode == FUSE_MKNOD) &&
        reply->size() >= sizeof oh + sizeof(fuse_entry_out)) {
      fuse_entry_out e;
      std::memcpy(&e, reply->data() + sizeof oh, sizeof e);
      nodes.push_back(e.nodeid);
      if (opcode == FUSE_CREATE && reply->size() >= sizeof oh + sizeof e + sizeof(fuse_open_out)) {
        fuse_open_out o;
        std::memcpy(&o, reply->data() + sizeof oh + sizeof e, sizeof o);
        handles.push_back(o.fh);
      }
    }
    if (oh.error == 0 && (opcode == FUSE_OPEN || opcode == FUSE_OPENDIR) &&
        reply->size() >= sizeof oh + sizeof(fuse_open_out)) {
      fuse_open_out o;
      std::memcpy(&o, reply->data() + sizeof oh, sizeof o);
      handles.push_back(o.fh);
    }
  };
  if (flags & 1) {
    fuse_init_in in{};
    in.major = 7;
    in.minor = 38;
    in.flags = ~0u;
    std::vector<uint8_t> args(sizeof in);
    std::memcpy(args.data(), &in, sizeof in);
    send(FUSE_INIT, 0, args);
  }
  while (size > 0) {
    const uint8_t op_pick = fuzz::take<uint8_t>(data, size);
    if (op_pick == kHostSwap) {
      ::renameat2(AT_FDCWD, (s.share / "dir").c_str(), AT_FDCWD, (s.share / "rel").c_str(), RENAME_EXCHANGE);
      continue;
    }
    const uint8_t node_pick = fuzz::take<uint8_t>(data, size);
    const uint8_t fh_pick = fuzz::take<uint8_t>(data, size);
    const uint16_t length = fuzz::take<uint16_t>(data, size);
    const size_t n = length < size ? length : size;
    std::vector<uint8_t> args(data, data + n);
    data += n;
    size -= n;
    const uint32_t opcode = kOpcodes[op_pick % (sizeof kOpcodes / sizeof kOpcodes[0])];
    const uint64_t nodeid = node_pick < 8 ? nodes[nodes.size() - 1 - node_pick % nodes.size()] : node_pick;
    // Most requests with a file handle carry it first: put a handed-out one there.
    if (fh_pick < 8 && args.size() >= 8 && opcode != FUSE_SETATTR && opcode != FUSE_GETATTR) {
      const uint64_t fh = handles[handles.size() - 1 - fh_pick % handles.size()];
      std::memcpy(args.data(), &fh, sizeof fh);
    }
    // A fuzzer must not fill the machine's disk: allocations stay small.
    if (opcode == FUSE_FALLOCATE && args.size() >= sizeof(fuse_fallocate_in)) {
      fuse_fallocate_in fa;
      std::memcpy(&fa, args.data(), sizeof fa);
      fa.offset %= 1 << 20;
      fa.length %= 1 << 20;
      std::memcpy(args.data(), &fa, sizeof fa);
    }
    send(opcode, nodeid, std::move(args));
  }
  if (flags & 2) server->reset();
  server.reset();
  s.check();
  return 0;
}
