// The FUSE server driven with raw requests, as a hostile guest kernel could
// send them: the operations against a scratch share, and every way out of
// it (.., planted and swapped symlinks, IDs never handed out or forgotten)
// checked against a canary directory beside the share.
#include "fs/fuse_server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fuse.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace hostvisor::fs {
namespace {

namespace stdfs = std::filesystem;

struct Reply {
  int error = 0;  // positive errno
  std::vector<uint8_t> body;
  bool none = false;  // no reply at all
  template <typename T>
  T as(size_t offset = 0) const {
    T v{};
    EXPECT_GE(body.size(), offset + sizeof(T));
    if (body.size() >= offset + sizeof(T)) std::memcpy(&v, body.data() + offset, sizeof(T));
    return v;
  }
  std::string text() const { return std::string(body.begin(), body.end()); }
};

class Client {
 public:
  explicit Client(FuseServer& server) : server_(server) {}

  // One request: the header, then each part (a struct's bytes, or a
  // string with its NUL).
  template <typename... Parts>
  Reply call(uint32_t opcode, uint64_t nodeid, const Parts&... parts) {
    std::vector<uint8_t> args;
    (add(args, parts), ...);
    fuse_in_header h{};
    h.len = static_cast<uint32_t>(sizeof h + args.size());
    h.opcode = opcode;
    h.unique = ++unique_;
    h.nodeid = nodeid;
    h.uid = 0;  // the guest's root: files must still be the host user's
    std::vector<uint8_t> request(sizeof h);
    std::memcpy(request.data(), &h, sizeof h);
    request.insert(request.end(), args.begin(), args.end());
    return send(request);
  }

  Reply send(const std::vector<uint8_t>& request, size_t room = 1 << 20) {
    Reply r;
    auto out = server_.handle(request, room);
    if (!out) {
      r.none = true;
      return r;
    }
    fuse_out_header oh{};
    EXPECT_GE(out->size(), sizeof oh);
    std::memcpy(&oh, out->data(), sizeof oh);
    EXPECT_EQ(oh.len, out->size());
    r.error = -oh.error;
    r.body.assign(out->begin() + sizeof oh, out->end());
    return r;
  }

  void init() {
    fuse_init_in in{};
    in.major = 7;
    in.minor = 36;
    in.max_readahead = 65536;
    in.flags = FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS | FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_INIT_EXT;
    auto r = call(FUSE_INIT, 0, in);
    ASSERT_EQ(r.error, 0);
    auto out = r.as<fuse_init_out>();
    EXPECT_EQ(out.major, 7u);
    EXPECT_EQ(out.max_write, FuseServer::kMaxIo);
  }

  uint64_t lookup(uint64_t parent, const std::string& name, int* error = nullptr) {
    auto r = call(FUSE_LOOKUP, parent, name);
    if (error) *error = r.error;
    return r.error ? 0 : r.as<fuse_entry_out>().nodeid;
  }

  // CREATE: {nodeid, fh}.
  std::pair<uint64_t, uint64_t> create(uint64_t parent, const std::string& name, uint32_t mode, int* error) {
    fuse_create_in in{};
    in.flags = O_RDWR | O_CREAT;
    in.mode = S_IFREG | mode;
    auto r = call(FUSE_CREATE, parent, in, name);
    *error = r.error;
    if (r.error) return {0, 0};
    return {r.as<fuse_entry_out>().nodeid, r.as<fuse_open_out>(sizeof(fuse_entry_out)).fh};
  }

  uint64_t open(uint64_t node, int flags, int* error) {
    fuse_open_in in{};
    in.flags = static_cast<uint32_t>(flags);
    auto r = call(FUSE_OPEN, node, in);
    *error = r.error;
    return r.error ? 0 : r.as<fuse_open_out>().fh;
  }

  Reply write(uint64_t node, uint64_t fh, uint64_t offset, const std::string& data) {
    fuse_write_in in{};
    in.fh = fh;
    in.offset = offset;
    in.size = static_cast<uint32_t>(data.size());
    std::vector<uint8_t> bytes(data.begin(), data.end());
    return call(FUSE_WRITE, node, in, bytes);
  }

  Reply read(uint64_t node, uint64_t fh, uint64_t offset, uint32_t size) {
    fuse_read_in in{};
    in.fh = fh;
    in.offset = offset;
    in.size = size;
    return call(FUSE_READ, node, in);
  }

 private:
  template <typename T>
  static void add(std::vector<uint8_t>& out, const T& part) {
    const auto* p = reinterpret_cast<const uint8_t*>(&part);
    out.insert(out.end(), p, p + sizeof(T));
  }
  static void add(std::vector<uint8_t>& out, const std::string& s) {
    out.insert(out.end(), s.begin(), s.end());
    out.push_back(0);
  }
  static void add(std::vector<uint8_t>& out, const std::vector<uint8_t>& bytes) {
    out.insert(out.end(), bytes.begin(), bytes.end());
  }

  FuseServer& server_;
  uint64_t unique_ = 0;
};

// A share and a canary directory beside it holding a secret file.
class FuseServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hv-fuse-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    share_ = base_ / "share";
    canary_ = base_ / "canary";
    stdfs::create_directories(share_);
    stdfs::create_directories(canary_);
    std::ofstream(canary_ / "secret") << "host secret";
  }
  void TearDown() override {
    std::error_code ec;
    stdfs::remove_all(base_, ec);
  }

  std::unique_ptr<FuseServer> start(FuseServerOptions options = {}) {
    auto server = FuseServer::open(share_.string(), options);
    EXPECT_TRUE(server.ok()) << (server.ok() ? "" : server.error().message());
    return server.ok() ? std::move(server).value() : nullptr;
  }

  // The canary is untouched: same file, same content, nothing added.
  void expect_canary_intact() {
    std::ifstream in(canary_ / "secret");
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(content, "host secret");
    size_t entries = 0;
    for (auto& e : stdfs::directory_iterator(canary_)) {
      (void)e;
      ++entries;
    }
    EXPECT_EQ(entries, 1u);
  }

  stdfs::path base_, share_, canary_;
};

TEST_F(FuseServerTest, RequestsBeforeInitAnswerEio) {
  auto server = start();
  Client c(*server);
  EXPECT_EQ(c.call(FUSE_LOOKUP, 1, std::string("x")).error, EIO);
}

TEST_F(FuseServerTest, CreateWriteReadStatAsTheHostUser) {
  auto server = start();
  Client c(*server);
  c.init();
  int e;
  auto [node, fh] = c.create(1, "hello.txt", 0640, &e);
  ASSERT_EQ(e, 0);
  EXPECT_EQ(c.write(node, fh, 0, "hello, share").error, 0);
  auto r = c.read(node, fh, 7, 100);
  ASSERT_EQ(r.error, 0);
  EXPECT_EQ(r.text(), "share");
  struct stat st {};
  ASSERT_EQ(::stat((share_ / "hello.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::getuid());
  EXPECT_EQ(st.st_gid, ::getgid());
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_size, 12);
  fuse_getattr_in ga{};
  auto attr = c.call(FUSE_GETATTR, node, ga);
  ASSERT_EQ(attr.error, 0);
  EXPECT_EQ(attr.as<fuse_attr_out>().attr.size, 12u);
  EXPECT_EQ(attr.as<fuse_attr_out>().attr.ino, st.st_ino);
  fuse_release_in rel{};
  rel.fh = fh;
  EXPECT_EQ(c.call(FUSE_RELEASE, node, rel).error, 0);
  EXPECT_EQ(c.call(FUSE_RELEASE, node, rel).error, EBADF) << "a handle released twice";
}

TEST_F(FuseServerTest, DirectoriesLinksRenamesAndListing) {
  auto server = start();
  Client c(*server);
  c.init();
  fuse_mkdir_in mk{};
  mk.mode = 0750;
  auto dir = c.call(FUSE_MKDIR, 1, mk, std::string("d"));
  ASSERT_EQ(dir.error, 0);
  const uint64_t d = dir.as<fuse_entry_out>().nodeid;
  EXPECT_EQ(stdfs::status(share_ / "d").permissions(), stdfs::perms(0750));
  int e;
  auto [f, fh] = c.create(d, "a", 0644, &e);
  ASSERT_EQ(e, 0);
  fuse_link_in ln{};
  ln.oldnodeid = f;
  auto link = c.call(FUSE_LINK, 1, ln, std::string("hard"));
  ASSERT_EQ(link.error, 0);
  EXPECT_EQ(link.as<fuse_entry_out>().nodeid, f) << "a hard link is the same node";
  EXPECT_EQ(stdfs::hard_link_count(share_ / "hard"), 2u);
  auto sym = c.call(FUSE_SYMLINK, 1, std::string("sym"), std::string("d/a"));
  ASSERT_EQ(sym.error, 0);
  EXPECT_EQ(c.call(FUSE_READLINK, sym.as<fuse_entry_out>().nodeid).text(), "d/a");
  fuse_rename2_in rn{};
  rn.newdir = 1;
  rn.flags = RENAME_NOREPLACE;
  EXPECT_EQ(c.call(FUSE_RENAME2, d, rn, std::string("a"), std::string("hard")).error, EEXIST);
  rn.flags = 0;
  EXPECT_EQ(c.call(FUSE_RENAME2, d, rn, std::string("a"), std::string("moved")).error, 0);
  EXPECT_TRUE(stdfs::exists(share_ / "moved"));
  // READDIRPLUS of the root lists what is there.
  fuse_open_in od{};
  auto opened = c.call(FUSE_OPENDIR, 1, od);
  ASSERT_EQ(opened.error, 0);
  fuse_read_in rd{};
  rd.fh = opened.as<fuse_open_out>().fh;
  rd.size = 4096;
  auto listing = c.call(FUSE_READDIRPLUS, 1, rd);
  ASSERT_EQ(listing.error, 0);
  std::vector<std::string> names;
  for (size_t pos = 0; pos < listing.body.size();) {
    auto entry = listing.as<fuse_direntplus>(pos);
    names.emplace_back(reinterpret_cast<const char*>(listing.body.data() + pos + FUSE_NAME_OFFSET_DIRENTPLUS),
                       entry.dirent.namelen);
    pos += FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + entry.dirent.namelen);
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", "d", "hard", "moved", "sym"}));
  // Removing: a non-empty directory stays.
  EXPECT_EQ(c.call(FUSE_RMDIR, 1, std::string("d")).error, 0);
  EXPECT_EQ(c.call(FUSE_UNLINK, 1, std::string("moved")).error, 0);
  EXPECT_EQ(stdfs::hard_link_count(share_ / "hard"), 1u);
}

TEST_F(FuseServerTest, DotDotAndPathsInNamesAreRefused) {
  auto server = start();
  Client c(*server);
  c.init();
  int e;
  for (const std::string name : {"..", ".", "../canary", "../../etc/passwd", "/etc/passwd", "a/../..", ""}) {
    c.lookup(1, name, &e);
    EXPECT_NE(e, 0) << name;
    fuse_mkdir_in mk{};
    mk.mode = 0755;
    EXPECT_NE(c.call(FUSE_MKDIR, 1, mk, name).error, 0) << name;
    EXPECT_NE(c.call(FUSE_UNLINK, 1, name).error, 0) << name;
  }
  fuse_rename_in rn{};
  rn.newdir = 1;
  EXPECT_NE(c.call(FUSE_RENAME, 1, rn, std::string("../canary/secret"), std::string("stolen")).error, 0);
  EXPECT_EQ(c.call(FUSE_SYMLINK, 1, std::string("../canary/x"), std::string("y")).error, EINVAL);
  expect_canary_intact();
}

TEST_F(FuseServerTest, PlantedSymlinksAreNeverFollowed) {
  auto server = start();
  Client c(*server);
  c.init();
  stdfs::create_symlink(canary_, share_ / "abs");
  stdfs::create_symlink("../canary", share_ / "rel");
  stdfs::create_symlink(canary_ / "secret", share_ / "file");
  int e;
  for (const std::string name : {"abs", "rel"}) {
    const uint64_t link = c.lookup(1, name, &e);
    ASSERT_EQ(e, 0);
    // As a directory it is nothing: a symlink node has no children.
    c.lookup(link, "secret", &e);
    EXPECT_EQ(e, ENOTDIR) << name;
    fuse_create_in cr{};
    cr.flags = O_RDWR | O_CREAT;
    cr.mode = S_IFREG | 0644;
    EXPECT_EQ(c.call(FUSE_CREATE, link, cr, std::string("planted")).error, ENOTDIR) << name;
    fuse_open_in od{};
    EXPECT_NE(c.call(FUSE_OPENDIR, link, od).error, 0) << name;
  }
  // The guest's own symlinks are the same: created, then never followed.
  ASSERT_EQ(c.call(FUSE_SYMLINK, 1, std::string("guest"), canary_.string()).error, 0);
  const uint64_t guest = c.lookup(1, "guest", &e);
  c.lookup(guest, "secret", &e);
  EXPECT_EQ(e, ENOTDIR);
  // Opening a symlink to a file, or creating through it, opens nothing.
  const uint64_t file = c.lookup(1, "file", &e);
  c.open(file, O_RDWR, &e);
  EXPECT_EQ(e, ELOOP);
  c.open(file, O_RDONLY, &e);
  EXPECT_EQ(e, ELOOP);
  c.create(1, "file", 0644, &e);
  EXPECT_EQ(e, ELOOP) << "CREATE without O_EXCL through a symlink";
  fuse_setattr_in sa{};
  sa.valid = FATTR_SIZE;
  sa.size = 0;
  EXPECT_NE(c.call(FUSE_SETATTR, file, sa).error, 0);
  sa.valid = FATTR_MODE;
  sa.mode = 0777;
  EXPECT_NE(c.call(FUSE_SETATTR, file, sa).error, 0);
  fuse_link_in ln{};
  ln.oldnodeid = file;
  // A hard link of the symlink is a symlink again: the secret is not linked in.
  if (c.call(FUSE_LINK, 1, ln, std::string("linked")).error == 0) {
    EXPECT_TRUE(stdfs::is_symlink(stdfs::symlink_status(share_ / "linked")));
  }
  fuse_getxattr_in gx{};
  gx.size = 0;
  EXPECT_EQ(c.call(FUSE_LISTXATTR, file, gx).error, EOPNOTSUPP);
  expect_canary_intact();
}

TEST_F(FuseServerTest, ASymlinkSwappedInAfterALookupIsNotFollowed) {
  auto server = start();
  Client c(*server);
  c.init();
  stdfs::create_directories(share_ / "dir");
  int e;
  const uint64_t dir = c.lookup(1, "dir", &e);
  ASSERT_EQ(e, 0);
  // The host (or a racing guest process) swaps the directory for a symlink out.
  stdfs::rename(share_ / "dir", share_ / "old");
  stdfs::create_symlink(canary_, share_ / "dir");
  // The node still names the directory it was, now "old", inside the share.
  int created;
  c.create(dir, "inside", 0644, &created);
  EXPECT_EQ(created, 0);
  EXPECT_TRUE(stdfs::exists(share_ / "old" / "inside"));
  // A new lookup finds the symlink as itself.
  const uint64_t swapped = c.lookup(1, "dir", &e);
  ASSERT_EQ(e, 0);
  EXPECT_NE(swapped, dir);
  c.create(swapped, "planted", 0644, &e);
  EXPECT_EQ(e, ENOTDIR);
  c.lookup(swapped, "secret", &e);
  EXPECT_EQ(e, ENOTDIR);
  expect_canary_intact();
}

// The race itself: a host thread swaps a directory and a symlink to the
// canary (one atomic rename exchange, over and over) while the guest looks
// the name up and creates, reads and looks up through whatever it got. A
// lookup finds one or the other, never the canary behind the symlink.
TEST_F(FuseServerTest, ASymlinkSwappedInDuringLookupsNeverLeadsOut) {
  auto server = start();
  Client c(*server);
  c.init();
  stdfs::create_directories(share_ / "d");
  stdfs::create_symlink(canary_, share_ / "swap");
  std::atomic<bool> stop{false};
  std::atomic<unsigned> swaps{0};
  std::thread swapper([&] {
    while (!stop.load()) {
      if (::renameat2(AT_FDCWD, (share_ / "d").c_str(), AT_FDCWD, (share_ / "swap").c_str(), RENAME_EXCHANGE) == 0)
        ++swaps;
    }
  });
  unsigned directories = 0, symlinks = 0;
  for (int i = 0; i < 3000 && (directories == 0 || symlinks == 0 || i < 600); ++i) {
    int e;
    const uint64_t node = c.lookup(1, "d", &e);
    if (e != 0) continue;
    int created;
    const std::string name = "planted" + std::to_string(i);
    const auto [file, fh] = c.create(node, name, 0644, &created);
    if (created == 0) {
      ++directories;
      EXPECT_EQ(c.write(file, fh, 0, "guest").error, 0);
    } else {
      EXPECT_EQ(created, ENOTDIR) << "a node of the symlink is no directory";
      ++symlinks;
    }
    c.lookup(node, "secret", &e);
    EXPECT_NE(e, 0) << "the canary's secret found through the share";
    fuse_open_in open_dir{};
    if (c.call(FUSE_OPENDIR, node, open_dir).error == 0) EXPECT_EQ(created, 0) << "a symlink opened as a directory";
    fuse_forget_in fg{};
    fg.nlookup = 1;
    c.call(FUSE_FORGET, node, fg);
  }
  stop = true;
  swapper.join();
  std::fprintf(stderr, "%u swaps; lookups found the directory %u times, the symlink %u times\n", swaps.load(),
               directories, symlinks);
  // Both sides of the race happened, or the test proved nothing.
  EXPECT_GT(directories, 0u);
  EXPECT_GT(symlinks, 0u);
  expect_canary_intact();
  // Every file the guest made is in the directory, under whichever name it has now.
  const stdfs::path dir = stdfs::is_symlink(stdfs::symlink_status(share_ / "d")) ? share_ / "swap" : share_ / "d";
  size_t planted = 0;
  for (const auto& entry : stdfs::directory_iterator(dir))
    planted += entry.path().filename().string().starts_with("planted");
  EXPECT_EQ(planted, directories);
}

TEST_F(FuseServerTest, CraftedAndForgottenIdsFindNothing) {
  auto server = start();
  Client c(*server);
  c.init();
  fuse_getattr_in ga{};
  for (uint64_t id : {0ull, 2ull, 3ull, 999ull, ~0ull}) {
    EXPECT_EQ(c.call(FUSE_GETATTR, id, ga).error, ENOENT) << id;
    EXPECT_EQ(c.call(FUSE_LOOKUP, id, std::string("x")).error, ENOENT) << id;
  }
  for (uint64_t fh : {0ull, 1ull, 77ull, ~0ull}) {
    EXPECT_EQ(c.read(1, fh, 0, 10).error, EBADF);
    EXPECT_EQ(c.write(1, fh, 0, "x").error, EBADF);
    ga.getattr_flags = FUSE_GETATTR_FH;
    ga.fh = fh;
    EXPECT_EQ(c.call(FUSE_GETATTR, 1, ga).error, EBADF);
  }
  std::ofstream(share_ / "f") << "data";
  int e;
  const uint64_t f = c.lookup(1, "f", &e);
  ASSERT_EQ(e, 0);
  EXPECT_EQ(c.lookup(1, "f", &e), f);
  fuse_forget_in fg{};
  fg.nlookup = 2;
  EXPECT_TRUE(c.call(FUSE_FORGET, f, fg).none);
  ga = {};
  EXPECT_EQ(c.call(FUSE_GETATTR, f, ga).error, ENOENT) << "a forgotten node";
  // A batch that claims more entries than it carries; forgetting the root.
  fuse_batch_forget_in batch{};
  batch.count = 1000000;
  fuse_forget_one one{1, 1000};
  EXPECT_TRUE(c.call(FUSE_BATCH_FORGET, 0, batch, one).none);
  EXPECT_EQ(c.call(FUSE_GETATTR, 1, ga).error, 0) << "the root is never forgotten";
  // A handle of a file stays good after its node is forgotten.
  const uint64_t again = c.lookup(1, "f", &e);
  const uint64_t fh = c.open(again, O_RDONLY, &e);
  ASSERT_EQ(e, 0);
  fg.nlookup = 1;
  c.call(FUSE_FORGET, again, fg);
  EXPECT_EQ(c.read(again, fh, 0, 10).text(), "data");
}

TEST_F(FuseServerTest, MalformedRequestsGetEinvalOrNothing) {
  auto server = start();
  Client c(*server);
  c.init();
  // Shorter than a header: nothing to answer.
  EXPECT_TRUE(c.send({1, 2, 3}).none);
  // A header whose len runs past the request.
  fuse_in_header h{};
  h.len = 4096;
  h.opcode = FUSE_LOOKUP;
  h.nodeid = 1;
  h.unique = 5;
  std::vector<uint8_t> bytes(sizeof h);
  std::memcpy(bytes.data(), &h, sizeof h);
  EXPECT_EQ(c.send(bytes).error, EINVAL);
  // Arguments cut short, for every opcode the server knows.
  for (uint32_t op = 1; op <= 52; ++op) {
    // These take no arguments: three stray bytes are not a short request.
    if (op == FUSE_INIT || op == FUSE_DESTROY || op == FUSE_STATFS || op == FUSE_SYNCFS) continue;
    h.len = sizeof h + 3;
    h.opcode = op;
    std::vector<uint8_t> cut(sizeof h + 3, 0xff);
    std::memcpy(cut.data(), &h, sizeof h);
    auto r = c.send(cut);
    if (!r.none) EXPECT_NE(r.error, 0) << "opcode " << op;
  }
  // A name with no NUL, a WRITE whose size overstates its data.
  EXPECT_EQ(c.call(FUSE_LOOKUP, 1, uint32_t{0x41414141}).error, EINVAL);
  int e;
  auto [node, fh] = c.create(1, "w", 0644, &e);
  fuse_write_in w{};
  w.fh = fh;
  w.size = 1 << 20;
  EXPECT_EQ(c.call(FUSE_WRITE, node, w, uint64_t{0}).error, EINVAL);
  // A reply that cannot fit is cut to the room: a READ never writes past it.
  EXPECT_EQ(c.write(node, fh, 0, std::string(1000, 'x')).error, 0);
  fuse_read_in rd{};
  rd.fh = fh;
  rd.size = 1000;
  h.len = sizeof h + sizeof rd;
  h.opcode = FUSE_READ;
  h.nodeid = node;
  std::vector<uint8_t> req(sizeof h + sizeof rd);
  std::memcpy(req.data(), &h, sizeof h);
  std::memcpy(req.data() + sizeof h, &rd, sizeof rd);
  auto small = c.send(req, sizeof(fuse_out_header) + 10);
  EXPECT_EQ(small.body.size(), 10u);
}

TEST_F(FuseServerTest, NoSetuidFilesAndNoGivingFilesAway) {
  auto server = start();
  Client c(*server);
  c.init();
  int e;
  auto [node, fh] = c.create(1, "tool", 04755, &e);
  ASSERT_EQ(e, 0);
  fuse_setattr_in sa{};
  sa.valid = FATTR_MODE;
  sa.mode = 06755;
  EXPECT_EQ(c.call(FUSE_SETATTR, node, sa).error, 0);
  struct stat st {};
  ASSERT_EQ(::stat((share_ / "tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u) << "set-user-ID and set-group-ID are dropped";
  sa.valid = FATTR_UID;
  sa.uid = ::geteuid() + 1;
  EXPECT_EQ(c.call(FUSE_SETATTR, node, sa).error, EPERM);
  sa.uid = ::geteuid();
  EXPECT_EQ(c.call(FUSE_SETATTR, node, sa).error, 0);
  fuse_mknod_in mk{};
  mk.mode = S_IFCHR | 0666;
  mk.rdev = makedev(1, 3);
  EXPECT_EQ(c.call(FUSE_MKNOD, 1, mk, std::string("null")).error, EPERM) << "no device nodes";
  mk.mode = S_IFIFO | 0644;
  EXPECT_EQ(c.call(FUSE_MKNOD, 1, mk, std::string("fifo")).error, 0);
  const uint64_t fifo = c.lookup(1, "fifo", &e);
  c.open(fifo, O_RDONLY, &e);
  EXPECT_EQ(e, ENXIO) << "a FIFO is never opened on the host (it would block a worker)";
}

TEST_F(FuseServerTest, ReadOnlyShareRefusesEveryChange) {
  std::ofstream(share_ / "f") << "data";
  FuseServerOptions options;
  options.read_only = true;
  auto server = start(options);
  Client c(*server);
  c.init();
  int e;
  const uint64_t f = c.lookup(1, "f", &e);
  c.open(f, O_RDWR, &e);
  EXPECT_EQ(e, EROFS);
  c.open(f, O_RDONLY | O_TRUNC, &e);
  EXPECT_EQ(e, EROFS);
  const uint64_t fh = c.open(f, O_RDONLY, &e);
  EXPECT_EQ(e, 0);
  EXPECT_EQ(c.write(f, fh, 0, "x").error, EROFS);
  c.create(1, "new", 0644, &e);
  EXPECT_EQ(e, EROFS);
  fuse_mkdir_in mk{};
  EXPECT_EQ(c.call(FUSE_MKDIR, 1, mk, std::string("d")).error, EROFS);
  EXPECT_EQ(c.call(FUSE_UNLINK, 1, std::string("f")).error, EROFS);
  EXPECT_EQ(c.call(FUSE_SYMLINK, 1, std::string("s"), std::string("f")).error, EROFS);
  fuse_setattr_in sa{};
  sa.valid = FATTR_MODE;
  sa.mode = 0777;
  EXPECT_EQ(c.call(FUSE_SETATTR, f, sa).error, EROFS);
  fuse_fallocate_in fa{};
  fa.fh = fh;
  fa.length = 4096;
  EXPECT_EQ(c.call(FUSE_FALLOCATE, f, fa).error, EROFS);
  std::ifstream in(share_ / "f");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "data");
}

TEST_F(FuseServerTest, LocksConflictBetweenHandles) {
  auto server = start();
  Client c(*server);
  c.init();
  int e;
  auto [node, fh1] = c.create(1, "locked", 0644, &e);
  const uint64_t fh2 = c.open(node, O_RDWR, &e);
  fuse_lk_in lk{};
  lk.fh = fh1;
  lk.lk.type = F_WRLCK;
  lk.lk.start = 0;
  lk.lk.end = ~0ull >> 1;
  EXPECT_EQ(c.call(FUSE_SETLK, node, lk).error, 0);
  lk.fh = fh2;
  EXPECT_EQ(c.call(FUSE_SETLK, node, lk).error, EAGAIN);
  auto got = c.call(FUSE_GETLK, node, lk);
  ASSERT_EQ(got.error, 0);
  EXPECT_EQ(got.as<fuse_lk_out>().lk.type, static_cast<uint32_t>(F_WRLCK));
  lk.lk_flags = FUSE_LK_FLOCK;
  lk.fh = fh1;
  EXPECT_EQ(c.call(FUSE_SETLK, node, lk).error, 0);
  lk.fh = fh2;
  EXPECT_EQ(c.call(FUSE_SETLK, node, lk).error, EWOULDBLOCK);
  lk.lk.end = 0;
  lk.lk.start = 5;
  lk.lk_flags = 0;
  EXPECT_EQ(c.call(FUSE_SETLK, node, lk).error, EINVAL) << "end before start";
}

}  // namespace
}  // namespace hostvisor::fs
