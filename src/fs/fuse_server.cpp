#include "fs/fuse_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <string>
#include <thread>

#include "fs/fuse_wire.h"

namespace hostvisor::fs {

namespace {

constexpr uint32_t kProtocolMajor = FUSE_KERNEL_VERSION;
constexpr uint32_t kProtocolMinor = FUSE_KERNEL_MINOR_VERSION;
constexpr uint32_t kMaxPages = FuseServer::kMaxIo / 4096;
// One COPY_FILE_RANGE copies at most this much; the caller loops on a short count.
constexpr uint64_t kMaxCopy = 16ull << 20;
constexpr size_t kMaxXattrValue = 65536;  // XATTR_SIZE_MAX
constexpr size_t kMaxXattrList = 65536;
// How often a waiting SETLKW tries again.
constexpr auto kLockRetry = std::chrono::milliseconds(10);

int open_beneath(int dirfd, std::string_view name, uint64_t flags, uint64_t mode) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const std::string path(name);
  int fd;
  do {
    fd = static_cast<int>(::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how));
  } while (fd < 0 && errno == EAGAIN);
  return fd;
}

// A single path component the guest may name: not empty, no '/', not "." or
// "..", no longer than NAME_MAX.
bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= NAME_MAX && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos;
}

fuse_attr to_attr(const struct stat& st) {
  fuse_attr a{};
  a.ino = st.st_ino;
  a.size = st.st_size;
  a.blocks = st.st_blocks;
  a.atime = st.st_atim.tv_sec;
  a.mtime = st.st_mtim.tv_sec;
  a.ctime = st.st_ctim.tv_sec;
  a.atimensec = st.st_atim.tv_nsec;
  a.mtimensec = st.st_mtim.tv_nsec;
  a.ctimensec = st.st_ctim.tv_nsec;
  a.mode = st.st_mode;
  a.nlink = st.st_nlink;
  a.uid = st.st_uid;
  a.gid = st.st_gid;
  a.rdev = st.st_rdev;
  a.blksize = st.st_blksize;
  return a;
}

int stat_node(const Node& node, struct stat* st) {
  return ::fstatat(node.fd.get(), "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

// Open-flag bits a guest may pass through; the rest (O_CREAT, O_EXCL,
// O_NOCTTY, O_PATH, O_TMPFILE, O_NOFOLLOW, O_DIRECTORY...) are the server's
// to choose.
constexpr int kPassedOpenFlags = O_ACCMODE | O_APPEND | O_TRUNC | O_NONBLOCK | O_DSYNC | O_SYNC | O_NOATIME;

// The mode bits the server sets: never set-user-ID or set-group-ID on a
// file, which would make the guest's program run with the host user's
// rights (root's, when hostvisor runs as root) for whoever runs it on the
// host. A directory keeps set-group-ID (group inheritance only).
mode_t safe_mode(mode_t mode, bool directory) { return mode & (directory ? 07777 & ~S_ISUID : 01777); }

bool writes(int flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC) != 0; }

}  // namespace

// One request being served: the reader over its arguments and the reply.
class FuseServer::Dispatch {
 public:
  Dispatch(FuseServer& server, const fuse_in_header& header, FuseRequestReader args, size_t room)
      : s_(server), h_(header), in_(args), room_(room), reply_(header.unique) {}

  // The reply, or nothing for requests that have none.
  std::optional<std::vector<uint8_t>> run() {
    const int error = serve();
    if (error == kNoReply) return std::nullopt;
    if (error == 0 && reply_.size() > room_) return std::move(reply_).finish(ERANGE);
    return std::move(reply_).finish(error);
  }

 private:
  static constexpr int kNoReply = -1;

  int serve() {
    if (h_.opcode == FUSE_INIT) return init();
    if (h_.opcode == FUSE_FORGET) return forget();
    if (h_.opcode == FUSE_BATCH_FORGET) return batch_forget();
    {
      std::lock_guard lock(s_.session_mutex_);
      if (!s_.initialized_) return EIO;
    }
    switch (h_.opcode) {
      case FUSE_DESTROY: s_.table_.clear(); return 0;
      case FUSE_LOOKUP: return lookup();
      case FUSE_GETATTR: return getattr();
      case FUSE_SETATTR: return setattr();
      case FUSE_READLINK: return readlink();
      case FUSE_SYMLINK: return symlink();
      case FUSE_MKNOD: return mknod();
      case FUSE_MKDIR: return mkdir();
      case FUSE_UNLINK: return remove(0);
      case FUSE_RMDIR: return remove(AT_REMOVEDIR);
      case FUSE_RENAME: return rename(false);
      case FUSE_RENAME2: return rename(true);
      case FUSE_LINK: return link();
      case FUSE_OPEN: return open(false);
      case FUSE_OPENDIR: return open(true);
      case FUSE_READ: return read();
      case FUSE_WRITE: return write();
      case FUSE_STATFS: return statfs();
      case FUSE_RELEASE:
      case FUSE_RELEASEDIR: return release();
      case FUSE_FSYNC:
      case FUSE_FSYNCDIR: return fsync();
      case FUSE_FLUSH: return flush();
      case FUSE_SETXATTR: return setxattr();
      case FUSE_GETXATTR: return getxattr(false);
      case FUSE_LISTXATTR: return getxattr(true);
      case FUSE_REMOVEXATTR: return removexattr();
      case FUSE_GETLK: return getlk();
      case FUSE_SETLK: return setlk(false);
      case FUSE_SETLKW: return setlk(true);
      case FUSE_ACCESS: return access();
      case FUSE_CREATE: return create();
      case FUSE_READDIR: return readdir(false);
      case FUSE_READDIRPLUS: return readdir(true);
      case FUSE_FALLOCATE: return fallocate();
      case FUSE_LSEEK: return lseek();
      case FUSE_COPY_FILE_RANGE: return copy_file_range();
      case FUSE_SYNCFS: return syncfs();
      case FUSE_INTERRUPT: return kNoReply;  // nothing here is interruptible
      default: return ENOSYS;
    }
  }

  // --- helpers

  bool read_only() const { return s_.options_.read_only; }

  std::shared_ptr<Node> node(uint64_t id) { return s_.table_.node(id); }

  // The directory node a request names in its header.
  int parent_dir(std::shared_ptr<Node>& out) {
    out = node(h_.nodeid);
    if (!out) return ENOENT;
    if (!S_ISDIR(out->type)) return ENOTDIR;
    return 0;
  }

  // The directory a change names in its header, and the new entry's name:
  // refused on a read-only share, and for a name that is not exactly one
  // path component.
  int parent_for_change(std::string_view name, std::shared_ptr<Node>& parent) {
    if (read_only()) return EROFS;
    if (const int e = parent_dir(parent); e != 0) return e;
    return valid_name(name) ? 0 : EINVAL;
  }

  // Reopens a node's checked O_PATH descriptor for I/O, through
  // /proc/self/fd. Only regular files and directories: a symlink is never
  // opened (that would follow it), a device or FIFO never reached.
  int reopen(const Node& n, int flags, UniqueFd& out) {
    if (S_ISLNK(n.type)) return ELOOP;
    if (!S_ISREG(n.type) && !S_ISDIR(n.type)) return ENXIO;
    const std::string name = std::to_string(n.fd.get());
    const int fd = ::openat(s_.proc_fd_.get(), name.c_str(), flags | O_CLOEXEC);
    if (fd < 0) return errno;
    out = UniqueFd(fd);
    return 0;
  }
  std::string proc_path(const Node& n) const { return "/proc/self/fd/" + std::to_string(n.fd.get()); }

  std::chrono::nanoseconds entry_timeout() const {
    switch (s_.options_.cache) {
      case CachePolicy::kNever: return std::chrono::nanoseconds(0);
      case CachePolicy::kAlways: return std::chrono::hours(24);
      case CachePolicy::kAuto: break;
    }
    return std::chrono::seconds(1);
  }

  void set_timeouts(uint64_t& secs, uint32_t& nsecs) const {
    const auto t = entry_timeout();
    secs = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(t).count());
    nsecs = static_cast<uint32_t>((t - std::chrono::seconds(secs)).count());
  }

  // Looks `name` up beneath `parent` and counts a lookup of the node it
  // finds (the guest's FORGET takes it back). Fills `entry`.
  int lookup_entry(const Node& parent, std::string_view name, fuse_entry_out& entry) {
    if (!valid_name(name)) return name.size() > NAME_MAX ? ENAMETOOLONG : EINVAL;
    const int fd = open_beneath(parent.fd.get(), name, O_PATH | O_NOFOLLOW, 0);
    if (fd < 0) return errno;
    UniqueFd owned(fd);
    struct stat st {};
    if (::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
    return entry_for(std::move(owned), st, entry);
  }

  int entry_for(UniqueFd fd, const struct stat& st, fuse_entry_out& entry) {
    const uint64_t id = s_.table_.add_lookup(std::move(fd), st.st_dev, st.st_ino, st.st_mode & S_IFMT);
    if (id == 0) return errno;
    entry = fuse_entry_out{};
    entry.nodeid = id;
    entry.generation = 0;
    set_timeouts(entry.entry_valid, entry.entry_valid_nsec);
    set_timeouts(entry.attr_valid, entry.attr_valid_nsec);
    entry.attr = to_attr(st);
    return 0;
  }

  // A node's O_PATH descriptor for a file just made by name (mkdir, mknod,
  // symlink, link): looked up again beneath the parent, never followed.
  int reply_new_entry(const Node& parent, std::string_view name) {
    fuse_entry_out entry;
    if (const int e = lookup_entry(parent, name, entry); e != 0) return e;
    reply_.append(entry);
    return 0;
  }

  // Sets the exact mode bits the guest asked for: the host's umask must not
  // change what the guest's own umask already applied.
  void apply_mode(const Node& parent, std::string_view name, mode_t mode) {
    const int fd = open_beneath(parent.fd.get(), name, O_PATH | O_NOFOLLOW, 0);
    if (fd < 0) return;
    UniqueFd owned(fd);
    struct stat st {};
    if (::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 || S_ISLNK(st.st_mode)) return;
    const mode_t wanted = safe_mode(mode, S_ISDIR(st.st_mode));
    if ((st.st_mode & 07777) == wanted) return;
    ::fchmodat(s_.proc_fd_.get(), std::to_string(fd).c_str(), wanted, 0);
  }

  std::shared_ptr<Handle> handle(uint64_t fh) { return s_.table_.handle(fh); }

  // --- operations

  int init() {
    auto in = in_.take_prefix<fuse_init_in>();
    if (in.major == 0) return EINVAL;
    fuse_init_out out{};
    out.major = kProtocolMajor;
    out.minor = kProtocolMinor;
    if (in.major < kProtocolMajor) return EPROTO;
    if (in.major > kProtocolMajor) {
      // The kernel asks again with our major (fuse.h: the reply is just major).
      reply_.append(out);
      return 0;
    }
    if (in.minor < 27) return EPROTO;  // older than any virtio-fs driver
    const uint64_t offered = in.flags | (uint64_t{in.flags2} << 32);
    uint64_t wanted = FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_FLOCK_LOCKS |
                      FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES |
                      FUSE_ASYNC_DIO;
    if (s_.options_.cache == CachePolicy::kAlways) wanted |= FUSE_CACHE_SYMLINKS;
    const uint64_t flags = offered & wanted;
    out.minor = std::min<uint32_t>(in.minor, kProtocolMinor);
    out.max_readahead = in.max_readahead;
    out.flags = static_cast<uint32_t>(flags);
    out.flags2 = static_cast<uint32_t>(flags >> 32);
    out.max_background = 64;
    out.congestion_threshold = 48;
    out.max_write = FuseServer::kMaxIo;
    out.time_gran = 1;
    out.max_pages = kMaxPages;
    {
      std::lock_guard lock(s_.session_mutex_);
      s_.initialized_ = true;
    }
    reply_.append(out);
    return 0;
  }

  int forget() {
    if (auto in = in_.take<fuse_forget_in>()) s_.table_.forget(h_.nodeid, in->nlookup);
    return kNoReply;
  }

  int batch_forget() {
    auto in = in_.take<fuse_batch_forget_in>();
    if (!in) return kNoReply;
    // The count is the guest's: only what the request really holds is read.
    for (uint32_t i = 0; i < in->count; ++i) {
      auto one = in_.take<fuse_forget_one>();
      if (!one) break;
      s_.table_.forget(one->nodeid, one->nlookup);
    }
    return kNoReply;
  }

  int lookup() {
    auto name = in_.take_string();
    if (!name) return EINVAL;
    std::shared_ptr<Node> parent;
    if (const int e = parent_dir(parent); e != 0) return e;
    fuse_entry_out entry;
    if (const int e = lookup_entry(*parent, *name, entry); e != 0) return e;
    reply_.append(entry);
    return 0;
  }

  int reply_attr(const struct stat& st) {
    fuse_attr_out out{};
    set_timeouts(out.attr_valid, out.attr_valid_nsec);
    out.attr = to_attr(st);
    reply_.append(out);
    return 0;
  }

  int getattr() {
    auto in = in_.take_prefix<fuse_getattr_in>();
    struct stat st {};
    if (in.getattr_flags & FUSE_GETATTR_FH) {
      auto h = handle(in.fh);
      if (!h) return EBADF;
      if (::fstat(h->fd.get(), &st) != 0) return errno;
      return reply_attr(st);
    }
    auto n = node(h_.nodeid);
    if (!n) return ENOENT;
    if (const int e = stat_node(*n, &st); e != 0) return e;
    return reply_attr(st);
  }

  int setattr() {
    auto in = in_.take<fuse_setattr_in>();
    if (!in) return EINVAL;
    auto n = node(h_.nodeid);
    if (!n) return ENOENT;
    const uint32_t changes = in->valid & (FATTR_MODE | FATTR_UID | FATTR_GID | FATTR_SIZE | FATTR_ATIME | FATTR_MTIME |
                                          FATTR_ATIME_NOW | FATTR_MTIME_NOW);
    if (changes != 0 && read_only()) return EROFS;
    std::shared_ptr<Handle> h;
    if (in->valid & FATTR_FH) {
      h = handle(in->fh);
      if (!h) return EBADF;
    }
    const std::string proc_name = std::to_string(n->fd.get());
    if (in->valid & FATTR_MODE) {
      if (S_ISLNK(n->type)) return EOPNOTSUPP;
      if (::fchmodat(s_.proc_fd_.get(), proc_name.c_str(), safe_mode(in->mode, S_ISDIR(n->type)), 0) != 0) return errno;
    }
    if (in->valid & (FATTR_UID | FATTR_GID)) {
      // Everything in the share is the host user's: giving a file away
      // (possible when hostvisor runs as root) is refused.
      if ((in->valid & FATTR_UID) && in->uid != ::geteuid()) return EPERM;
      if ((in->valid & FATTR_GID) && in->gid != ::getegid()) return EPERM;
      const uid_t uid = (in->valid & FATTR_UID) ? in->uid : static_cast<uid_t>(-1);
      const gid_t gid = (in->valid & FATTR_GID) ? in->gid : static_cast<gid_t>(-1);
      if (::fchownat(n->fd.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return errno;
    }
    if (in->valid & FATTR_SIZE) {
      if (in->size > static_cast<uint64_t>(INT64_MAX)) return EFBIG;
      if (h) {
        if (::ftruncate(h->fd.get(), static_cast<off_t>(in->size)) != 0) return errno;
      } else {
        if (!S_ISREG(n->type)) return S_ISDIR(n->type) ? EISDIR : EINVAL;
        UniqueFd fd;
        if (const int e = reopen(*n, O_WRONLY, fd); e != 0) return e;
        if (::ftruncate(fd.get(), static_cast<off_t>(in->size)) != 0) return errno;
      }
    }
    if (in->valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)) {
      timespec times[2];
      times[0].tv_nsec = UTIME_OMIT;
      times[1].tv_nsec = UTIME_OMIT;
      if (in->valid & FATTR_ATIME_NOW) {
        times[0].tv_nsec = UTIME_NOW;
      } else if (in->valid & FATTR_ATIME) {
        if (in->atimensec >= 1000000000u || in->atime > static_cast<uint64_t>(INT64_MAX)) return EINVAL;
        times[0] = timespec{static_cast<time_t>(in->atime), static_cast<long>(in->atimensec)};
      }
      if (in->valid & FATTR_MTIME_NOW) {
        times[1].tv_nsec = UTIME_NOW;
      } else if (in->valid & FATTR_MTIME) {
        if (in->mtimensec >= 1000000000u || in->mtime > static_cast<uint64_t>(INT64_MAX)) return EINVAL;
        times[1] = timespec{static_cast<time_t>(in->mtime), static_cast<long>(in->mtimensec)};
      }
      const int rc = S_ISLNK(n->type) ? ::utimensat(n->fd.get(), "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)
                                      : ::utimensat(s_.proc_fd_.get(), proc_name.c_str(), times, 0);
      if (rc != 0) return errno;
    }
    struct stat st {};
    if (const int e = stat_node(*n, &st); e != 0) return e;
    return reply_attr(st);
  }

  int readlink() {
    auto n = node(h_.nodeid);
    if (!n) return ENOENT;
    if (!S_ISLNK(n->type)) return EINVAL;
    char target[PATH_MAX];
    const ssize_t got = ::readlinkat(n->fd.get(), "", target, sizeof target);
    if (got < 0) return errno;
    reply_.append_bytes(std::span(reinterpret_cast<const uint8_t*>(target), static_cast<size_t>(got)));
    return 0;
  }

  int symlink() {
    auto name = in_.take_string();
    auto target = in_.take_string();
    if (!name || !target) return EINVAL;
    std::shared_ptr<Node> parent;
    if (const int e = parent_for_change(*name, parent); e != 0) return e;
    if (target->empty() || target->size() >= PATH_MAX) return target->empty() ? ENOENT : ENAMETOOLONG;
    // The target is only text stored in the link: the server never follows it.
    if (::symlinkat(std::string(*target).c_str(), parent->fd.get(), std::string(*name).c_str()) != 0) return errno;
    return reply_new_entry(*parent, *name);
  }

  int mknod() {
    auto in = in_.take<fuse_mknod_in>();
    auto name = in_.take_string();
    if (!in || !name) return EINVAL;
    std::shared_ptr<Node> parent;
    if (const int e = parent_for_change(*name, parent); e != 0) return e;
    // FIFOs and regular files only: a device node would be the host's
    // device, and sockets are the guest kernel's own.
    const mode_t type = in->mode & S_IFMT;
    if (type != S_IFIFO && type != S_IFREG) return EPERM;
    if (::mknodat(parent->fd.get(), std::string(*name).c_str(), type | safe_mode(in->mode, false), 0) != 0)
      return errno;
    apply_mode(*parent, *name, in->mode);
    return reply_new_entry(*parent, *name);
  }

  int mkdir() {
    auto in = in_.take<fuse_mkdir_in>();
    auto name = in_.take_string();
    if (!in || !name) return EINVAL;
    std::shared_ptr<Node> parent;
    if (const int e = parent_for_change(*name, parent); e != 0) return e;
    if (::mkdirat(parent->fd.get(), std::string(*name).c_str(), safe_mode(in->mode, true)) != 0) return errno;
    apply_mode(*parent, *name, in->mode);
    return reply_new_entry(*parent, *name);
  }

  int remove(int flags) {
    auto name = in_.take_string();
    if (!name) return EINVAL;
    std::shared_ptr<Node> parent;
    if (const int e = parent_for_change(*name, parent); e != 0) return e;
    if (::unlinkat(parent->fd.get(), std::string(*name).c_str(), flags) != 0) return errno;
    return 0;
  }

  int rename(bool with_flags) {
    uint64_t newdir = 0;
    uint32_t flags = 0;
    if (with_flags) {
      auto in = in_.take<fuse_rename2_in>();
      if (!in) return EINVAL;
      newdir = in->newdir;
      flags = in->flags;
    } else {
      auto in = in_.take<fuse_rename_in>();
      if (!in) return EINVAL;
      newdir = in->newdir;
    }
    auto oldname = in_.take_string();
    auto newname = in_.take_string();
    if (!oldname || !newname) return EINVAL;
    if (read_only()) return EROFS;
    // RENAME_WHITEOUT makes a device node (overlayfs's): not here.
    if (flags & ~static_cast<uint32_t>(RENAME_NOREPLACE | RENAME_EXCHANGE)) return EINVAL;
    std::shared_ptr<Node> from;
    if (const int e = parent_dir(from); e != 0) return e;
    auto to = node(newdir);
    if (!to) return ENOENT;
    if (!S_ISDIR(to->type)) return ENOTDIR;
    if (!valid_name(*oldname) || !valid_name(*newname)) return EINVAL;
    if (::renameat2(from->fd.get(), std::string(*oldname).c_str(), to->fd.get(), std::string(*newname).c_str(),
                    flags) != 0)
      return errno;
    return 0;
  }

  int link() {
    auto in = in_.take<fuse_link_in>();
    auto name = in_.take_string();
    if (!in || !name) return EINVAL;
    if (read_only()) return EROFS;
    std::shared_ptr<Node> parent;
    if (const int e = parent_dir(parent); e != 0) return e;
    auto target = node(in->oldnodeid);
    if (!target) return ENOENT;
    if (S_ISDIR(target->type)) return EPERM;
    if (!valid_name(*name)) return EINVAL;
    // linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the node's own
    // /proc/self/fd entry does the same for an unprivileged user.
    if (::linkat(s_.proc_fd_.get(), std::to_string(target->fd.get()).c_str(), parent->fd.get(),
                 std::string(*name).c_str(), AT_SYMLINK_FOLLOW) != 0)
      return errno;
    return reply_new_entry(*parent, *name);
  }

  uint32_t open_reply_flags(bool directory) const {
    switch (s_.options_.cache) {
      case CachePolicy::kNever: return directory ? 0 : FOPEN_DIRECT_IO;
      case CachePolicy::kAlways: return directory ? FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE : FOPEN_KEEP_CACHE;
      case CachePolicy::kAuto: break;
    }
    return 0;
  }

  int add_open_handle(std::shared_ptr<Node> n, UniqueFd fd, bool directory, fuse_open_out& out) {
    auto h = std::make_shared<Handle>();
    h->node = std::move(n);
    h->fd = std::move(fd);
    h->directory = directory;
    const uint64_t fh = s_.table_.add_handle(std::move(h));
    if (fh == 0) return errno;
    out = fuse_open_out{};
    out.fh = fh;
    out.open_flags = open_reply_flags(directory);
    return 0;
  }

  int open(bool directory) {
    auto in = in_.take<fuse_open_in>();
    if (!in) return EINVAL;
    auto n = node(h_.nodeid);
    if (!n) return ENOENT;
    int flags = static_cast<int>(in->flags) & kPassedOpenFlags;
    if (directory) {
      if (!S_ISDIR(n->type)) return ENOTDIR;
      flags = O_RDONLY | O_DIRECTORY;
    } else {
      if (S_ISDIR(n->type)) return EISDIR;
      if (read_only() && writes(flags)) return EROFS;
    }
    UniqueFd fd;
    if (const int e = reopen(*n, flags, fd); e != 0) return e;
    fuse_open_out out;
    if (const int e = add_open_handle(std::move(n), std::move(fd), directory, out); e != 0) return e;
    reply_.append(out);
    return 0;
  }

  int create() {
    auto in = in_.take<fuse_create_in>();
    auto name = in_.take_string();
    if (!in || !name) return EINVAL;
    std::shared_ptr<Node> parent;
    if (const int e = parent_for_change(*name, parent); e != 0) return e;
    const int flags =
        (static_cast<int>(in->flags) & kPassedOpenFlags) | O_CREAT | (static_cast<int>(in->flags) & O_EXCL);
    // RESOLVE_NO_SYMLINKS: a symlink planted under the name is not followed
    // to create or open its target (ELOOP).
    // O_NONBLOCK: an existing FIFO under the name must not hold the worker.
    const mode_t mode = safe_mode(in->mode, false);
    const int fd = open_beneath(parent->fd.get(), *name, flags | O_NONBLOCK, mode);
    if (fd < 0) return errno;
    UniqueFd file(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno;
    if (!S_ISREG(st.st_mode)) return S_ISDIR(st.st_mode) ? EISDIR : ENXIO;
    if (!(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if ((st.st_mode & 07777) != mode && st.st_size == 0) ::fchmod(fd, mode);
    ::fstat(fd, &st);
    // The node's O_PATH descriptor is the opened file itself, reopened: no
    // second lookup by name that a rename could race.
    const int path_fd = ::openat(s_.proc_fd_.get(), std::to_string(fd).c_str(), O_PATH | O_CLOEXEC);
    if (path_fd < 0) return errno;
    fuse_entry_out entry;
    if (const int e = entry_for(UniqueFd(path_fd), st, entry); e != 0) return e;
    auto n = node(entry.nodeid);
    fuse_open_out out;
    if (const int e = add_open_handle(n, std::move(file), false, out); e != 0) {
      s_.table_.forget(entry.nodeid, 1);
      return e;
    }
    reply_.append(entry);
    reply_.append(out);
    return 0;
  }

  int read() {
    auto in = in_.take<fuse_read_in>();
    if (!in) return EINVAL;
    auto h = handle(in->fh);
    if (!h || h->directory) return EBADF;
    if (in->offset > static_cast<uint64_t>(INT64_MAX)) return EINVAL;
    const size_t room = room_ > sizeof(fuse_out_header) ? room_ - sizeof(fuse_out_header) : 0;
    const size_t size = std::min<size_t>({in->size, FuseServer::kMaxIo, room});
    const size_t at = reply_.size();
    uint8_t* buffer = reply_.grow(size);
    size_t done = 0;
    while (done < size) {
      const ssize_t got = ::pread(h->fd.get(), buffer + done, size - done, static_cast<off_t>(in->offset + done));
      if (got < 0) {
        if (errno == EINTR) continue;
        if (done == 0) return errno;
        break;
      }
      if (got == 0) break;
      done += static_cast<size_t>(got);
    }
    reply_.shrink_to(at + done);
    return 0;
  }

  int write() {
    auto in = in_.take<fuse_write_in>();
    if (!in) return EINVAL;
    if (read_only()) return EROFS;
    auto data = in_.take_bytes(in->size);
    if (!data) return EINVAL;
    auto h = handle(in->fh);
    if (!h || h->directory) return EBADF;
    if (in->offset > static_cast<uint64_t>(INT64_MAX) - in->size) return EFBIG;
    size_t done = 0;
    while (done < data->size()) {
      // With O_APPEND the host appends whatever the offset says (pwrite's
      // documented Linux behaviour), so appends from two guests interleave whole.
      const ssize_t put =
          ::pwrite(h->fd.get(), data->data() + done, data->size() - done, static_cast<off_t>(in->offset + done));
      if (put < 0) {
        if (errno == EINTR) continue;
        if (done == 0) return errno;
        break;
      }
      if (put == 0) break;
      done += static_cast<size_t>(put);
    }
    fuse_write_out out{};
    out.size = static_cast<uint32_t>(done);
    reply_.append(out);
    return 0;
  }

  int statfs() {
    auto n = node(h_.nodeid);
    if (!n) return ENOENT;
    struct statfs st {};
    if (::fstatfs(n->fd.get(), &st) != 0) return errno;
    fuse_statfs_out out{};
    out.st.blocks = st.f_blocks;
    out.st.bfree = st.f_bfree;
    out.st.bavail = st.f_bavail;
    out.st.files = st.f_files;
    out.st.ffree = st.f_ffree;
    out.st.bsize = static_cast<uint32_t>(st.f_bsize);
    out.st.namelen = static_cast<uint32_t>(st.f_namelen);
    out.st.frsize = static_cast<uint32_t>(st.f_frsize);
    reply_.append(out);
    return 0;
  }

  int release() {
    auto in = in_.take<fuse_release_in>();
    if (!in) return EINVAL;
    // Closing the descriptor drops its locks (OFD and flock) too.
    if (!s_.table_.remove_handle(in->fh)) return EBADF;
    return 0;
  }

  int fsync() {
    auto in = in_.take<fuse_fsync_in>();
    if (!in) return EINVAL;
    auto h = handle(in->fh);
    if (!h) return EBADF;
    const int rc = (in->fsync_flags & FUSE_FSYNC_FDATASYNC) ? ::fdatasync(h->fd.get()) : ::fsync(h->fd.get());
    return rc == 0 ? 0 : errno;
  }

  int flush() {
    auto in = in_.take<fuse_flush_in>();
    if (!in) return EINVAL;
    // Writes are not buffered here; a closing process's POSIX locks come
    // as their own SETLK(F_UNLCK).
    return handle(in->fh) ? 0 : EBADF;
  }

  int syncfs() {
    UniqueFd fd;
    auto root = s_.table_.root();
    if (const int e = reopen(*root, O_RDONLY | O_DIRECTORY, fd); e != 0) return e;
    return ::syncfs(fd.get()) == 0 ? 0 : errno;
  }

  int access() {
    auto in = in_.take<fuse_access_in>();
    if (!in) return EINVAL;
    auto n = node(h_.nodeid);
    if (!n) return ENOENT;
    if ((in->mask & W_OK) && read_only()) return EROFS;
    if (S_ISLNK(n->type)) return 0;
    if (::faccessat(s_.proc_fd_.get(), std::to_string(n->fd.get()).c_str(), static_cast<int>(in->mask & 7), 0) != 0)
      return errno;
    return 0;
  }

  // xattrs through the node's /proc/self/fd path: there are no *at xattr
  // calls before Linux 6.13, and an O_PATH descriptor refuses f*xattr.
  // Regular files and directories only (the path would follow a symlink).
  int xattr_target(std::shared_ptr<Node>& n) {
    n = node(h_.nodeid);
    if (!n) return ENOENT;
    if (!S_ISREG(n->type) && !S_ISDIR(n->type)) return EOPNOTSUPP;
    return 0;
  }

  int setxattr() {
    // FUSE_SETXATTR_EXT is not negotiated: the 8-byte form.
    auto size = in_.take<uint32_t>();
    auto flags = in_.take<uint32_t>();
    auto name = in_.take_string();
    if (!size || !flags || !name) return EINVAL;
    if (*size > kMaxXattrValue) return E2BIG;
    auto value = in_.take_bytes(*size);
    if (!value) return EINVAL;
    if (read_only()) return EROFS;
    if (name->empty() || name->size() > XATTR_NAME_MAX) return name->empty() ? EINVAL : ERANGE;
    std::shared_ptr<Node> n;
    if (const int e = xattr_target(n); e != 0) return e;
    if (::setxattr(proc_path(*n).c_str(), std::string(*name).c_str(), value->data(), value->size(),
                   static_cast<int>(*flags & (XATTR_CREATE | XATTR_REPLACE))) != 0)
      return errno;
    return 0;
  }

  int getxattr(bool list) {
    auto in = in_.take<fuse_getxattr_in>();
    if (!in) return EINVAL;
    std::optional<std::string_view> name;
    if (!list) {
      name = in_.take_string();
      if (!name) return EINVAL;
      if (name->empty() || name->size() > XATTR_NAME_MAX) return ERANGE;
    }
    std::shared_ptr<Node> n;
    if (const int e = xattr_target(n); e != 0) return e;
    const size_t limit = list ? kMaxXattrList : kMaxXattrValue;
    const size_t room = room_ > sizeof(fuse_out_header) ? room_ - sizeof(fuse_out_header) : 0;
    const size_t size = std::min<size_t>({in->size, limit, room});
    std::vector<uint8_t> buffer(in->size == 0 ? 0 : size);
    const std::string path = proc_path(*n);
    const ssize_t got = list ? ::listxattr(path.c_str(), reinterpret_cast<char*>(buffer.data()), buffer.size())
                             : ::getxattr(path.c_str(), std::string(*name).c_str(), buffer.data(), buffer.size());
    if (got < 0) return errno;
    if (in->size == 0) {
      fuse_getxattr_out out{};
      out.size = static_cast<uint32_t>(got);
      reply_.append(out);
      return 0;
    }
    reply_.append_bytes(std::span(buffer.data(), static_cast<size_t>(got)));
    return 0;
  }

  int removexattr() {
    auto name = in_.take_string();
    if (!name) return EINVAL;
    if (read_only()) return EROFS;
    std::shared_ptr<Node> n;
    if (const int e = xattr_target(n); e != 0) return e;
    if (::removexattr(proc_path(*n).c_str(), std::string(*name).c_str()) != 0) return errno;
    return 0;
  }

  // A fuse_file_lock as an OFD lock (per open file: one guest open, one
  // host open, so two guest opens conflict as two processes would).
  static int to_flock(const fuse_file_lock& lk, struct flock& fl) {
    if (lk.type != F_RDLCK && lk.type != F_WRLCK && lk.type != F_UNLCK) return EINVAL;
    if (lk.start > static_cast<uint64_t>(INT64_MAX) || lk.end < lk.start) return EINVAL;
    fl = {};
    fl.l_type = static_cast<short>(lk.type);
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(lk.start);
    fl.l_len = lk.end >= static_cast<uint64_t>(INT64_MAX) ? 0 : static_cast<off_t>(lk.end - lk.start + 1);
    return 0;
  }

  int getlk() {
    auto in = in_.take<fuse_lk_in>();
    if (!in) return EINVAL;
    auto h = handle(in->fh);
    if (!h) return EBADF;
    struct flock fl;
    if (const int e = to_flock(in->lk, fl); e != 0) return e;
    if (::fcntl(h->fd.get(), F_OFD_GETLK, &fl) != 0) return errno;
    fuse_lk_out out{};
    out.lk.type = static_cast<uint32_t>(fl.l_type);
    if (fl.l_type != F_UNLCK) {
      out.lk.start = static_cast<uint64_t>(fl.l_start);
      out.lk.end = fl.l_len == 0 ? static_cast<uint64_t>(INT64_MAX) : static_cast<uint64_t>(fl.l_start + fl.l_len - 1);
      out.lk.pid = 0;
    }
    reply_.append(out);
    return 0;
  }

  int setlk(bool wait) {
    auto in = in_.take<fuse_lk_in>();
    if (!in) return EINVAL;
    auto h = handle(in->fh);
    if (!h) return EBADF;
    auto try_lock = [&]() -> int {
      if (in->lk_flags & FUSE_LK_FLOCK) {
        int op = in->lk.type == F_RDLCK ? LOCK_SH : in->lk.type == F_WRLCK ? LOCK_EX : LOCK_UN;
        if (in->lk.type != F_RDLCK && in->lk.type != F_WRLCK && in->lk.type != F_UNLCK) return EINVAL;
        return ::flock(h->fd.get(), op | LOCK_NB) == 0 ? 0 : errno;
      }
      struct flock fl;
      if (const int e = to_flock(in->lk, fl); e != 0) return e;
      return ::fcntl(h->fd.get(), F_OFD_SETLK, &fl) == 0 ? 0 : errno;
    };
    int e = try_lock();
    if (!wait || (e != EAGAIN && e != EWOULDBLOCK && e != EACCES)) return e;
    // A waiting lock holds a worker: at most one fewer than there may be
    // workers wait at once, so the one that frees the lock can still be
    // served; the waits poll, so a reset ends them.
    if (s_.lock_waiters_.fetch_add(1) >= kMaxLockWaiters) {
      s_.lock_waiters_.fetch_sub(1);
      return ENOLCK;
    }
    while ((e == EAGAIN || e == EWOULDBLOCK || e == EACCES) && !s_.stopping_.load()) {
      std::this_thread::sleep_for(kLockRetry);
      e = try_lock();
    }
    s_.lock_waiters_.fetch_sub(1);
    return s_.stopping_.load() && e != 0 ? EINTR : e;
  }

  int fallocate() {
    auto in = in_.take<fuse_fallocate_in>();
    if (!in) return EINVAL;
    if (read_only()) return EROFS;
    auto h = handle(in->fh);
    if (!h || h->directory) return EBADF;
    constexpr uint32_t kModes = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
    if (in->mode & ~kModes) return EOPNOTSUPP;
    if (in->offset > static_cast<uint64_t>(INT64_MAX) || in->length > static_cast<uint64_t>(INT64_MAX) - in->offset)
      return EFBIG;
    if (::fallocate(h->fd.get(), static_cast<int>(in->mode), static_cast<off_t>(in->offset),
                    static_cast<off_t>(in->length)) != 0)
      return errno;
    return 0;
  }

  int lseek() {
    auto in = in_.take<fuse_lseek_in>();
    if (!in) return EINVAL;
    auto h = handle(in->fh);
    if (!h || h->directory) return EBADF;
    if (in->whence != SEEK_SET && in->whence != SEEK_CUR && in->whence != SEEK_END && in->whence != SEEK_DATA &&
        in->whence != SEEK_HOLE)
      return EINVAL;
    if (in->offset > static_cast<uint64_t>(INT64_MAX)) return EINVAL;
    // A private descriptor per handle: its position is no one else's.
    const off_t at = ::lseek(h->fd.get(), static_cast<off_t>(in->offset), static_cast<int>(in->whence));
    if (at < 0) return errno;
    fuse_lseek_out out{};
    out.offset = static_cast<uint64_t>(at);
    reply_.append(out);
    return 0;
  }

  int copy_file_range() {
    auto in = in_.take<fuse_copy_file_range_in>();
    if (!in) return EINVAL;
    if (read_only()) return EROFS;
    auto from = handle(in->fh_in);
    auto to = handle(in->fh_out);
    if (!from || !to || from->directory || to->directory) return EBADF;
    if (in->off_in > static_cast<uint64_t>(INT64_MAX) || in->off_out > static_cast<uint64_t>(INT64_MAX)) return EINVAL;
    loff_t off_in = static_cast<loff_t>(in->off_in), off_out = static_cast<loff_t>(in->off_out);
    const size_t length = static_cast<size_t>(std::min<uint64_t>(in->len, kMaxCopy));
    const ssize_t copied = ::copy_file_range(from->fd.get(), &off_in, to->fd.get(), &off_out, length, 0);
    if (copied < 0) return errno;
    fuse_write_out out{};
    out.size = static_cast<uint32_t>(copied);
    reply_.append(out);
    return 0;
  }

  int readdir(bool plus) {
    auto in = in_.take<fuse_read_in>();
    if (!in) return EINVAL;
    auto h = handle(in->fh);
    if (!h || !h->directory) return EBADF;
    if (in->offset > static_cast<uint64_t>(INT64_MAX)) return EINVAL;
    const size_t room = room_ > sizeof(fuse_out_header) ? room_ - sizeof(fuse_out_header) : 0;
    const size_t size = std::min<size_t>({in->size, FuseServer::kMaxIo, room});
    std::lock_guard lock(h->directory_mutex);
    if (::lseek(h->fd.get(), static_cast<off_t>(in->offset), SEEK_SET) < 0) return errno;
    std::vector<uint8_t> buffer(std::min<size_t>(std::max<size_t>(size, 1024), 65536));
    size_t used = 0;
    for (;;) {
      const long got = ::syscall(SYS_getdents64, h->fd.get(), buffer.data(), buffer.size());
      if (got < 0) return used == 0 ? errno : 0;
      if (got == 0) return 0;
      for (long pos = 0; pos < got;) {
        struct Dirent64 {
          uint64_t ino;
          int64_t off;
          uint16_t reclen;
          uint8_t type;
        } d;
        std::memcpy(&d, buffer.data() + pos, sizeof d);
        const char* name_at = reinterpret_cast<const char*>(buffer.data() + pos + 19);
        const size_t max_name = d.reclen > 19 ? d.reclen - 19 : 0;
        const size_t name_len = strnlen(name_at, max_name);
        pos += d.reclen;
        if (d.reclen == 0) return 0;
        const std::string_view name(name_at, name_len);
        const size_t entry_size = plus ? FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + name_len)
                                       : FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + name_len);
        if (used + entry_size > size) return 0;
        fuse_dirent dirent{};
        dirent.ino = d.ino;
        dirent.off = static_cast<uint64_t>(d.off);
        dirent.namelen = static_cast<uint32_t>(name_len);
        dirent.type = d.type;
        const size_t at = reply_.size();
        if (plus) {
          fuse_entry_out entry{};
          if (name == "." || name == "..") {
            // Node ID 0: the kernel makes no dentry of it.
            entry.attr.ino = d.ino;
            entry.attr.mode = static_cast<uint32_t>(d.type) << 12;
          } else if (lookup_entry(*h->node, name, entry) != 0) {
            // Gone since getdents64 saw it: leave it out.
            continue;
          }
          reply_.append(entry);
        }
        reply_.append(dirent);
        reply_.append_bytes(std::span(reinterpret_cast<const uint8_t*>(name.data()), name.size()));
        reply_.grow(entry_size - (reply_.size() - at));
        used += entry_size;
      }
    }
  }

  static constexpr int kMaxLockWaiters = 2;

  FuseServer& s_;
  fuse_in_header h_;
  FuseRequestReader in_;
  size_t room_;
  FuseReply reply_;
};

Result<std::unique_ptr<FuseServer>> FuseServer::open(const std::string& root, FuseServerOptions options) {
  const int fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Error::from_errno("share " + root + ": cannot open it as a directory");
  UniqueFd root_fd(fd);
  const int proc = ::open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (proc < 0) return Error::from_errno("share " + root + ": /proc/self/fd (is /proc mounted?)");
  // openat2 (Linux 5.6) is what confines every lookup: without it, refuse.
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH;
  const int probe = static_cast<int>(::syscall(SYS_openat2, fd, ".", &how, sizeof how));
  if (probe < 0) return Error::from_errno("share " + root + ": openat2 with RESOLVE_BENEATH (needs Linux 5.6)");
  ::close(probe);
  return std::unique_ptr<FuseServer>(new FuseServer(std::move(root_fd), UniqueFd(proc), options));
}

FuseServer::FuseServer(UniqueFd root, UniqueFd proc_fd, FuseServerOptions options)
    : table_(options.max_nodes, options.max_handles), proc_fd_(std::move(proc_fd)), options_(options) {
  auto node = std::make_shared<Node>();
  struct stat st {};
  ::fstatat(root.get(), "", &st, AT_EMPTY_PATH);
  node->fd = std::move(root);
  node->dev = st.st_dev;
  node->ino = st.st_ino;
  node->type = S_IFDIR;
  table_.set_root(std::move(node));
}

std::optional<std::vector<uint8_t>> FuseServer::handle(std::span<const uint8_t> request, size_t reply_room) {
  FuseRequestReader reader(request);
  auto header = reader.take<fuse_in_header>();
  if (!header) return std::nullopt;
  // len counts the header and must lie within what the request holds.
  if (header->len < sizeof(fuse_in_header) || header->len > request.size()) {
    if (header->opcode == FUSE_FORGET || header->opcode == FUSE_BATCH_FORGET) return std::nullopt;
    return FuseReply(header->unique).finish(EINVAL);
  }
  FuseRequestReader args(request.subspan(sizeof(fuse_in_header), header->len - sizeof(fuse_in_header)));
  return Dispatch(*this, *header, args, std::min(reply_room, kMaxReply)).run();
}

void FuseServer::reset() {
  table_.clear();
  std::lock_guard lock(session_mutex_);
  initialized_ = false;
  stopping_ = false;
}

void FuseServer::stop_waiting() { stopping_ = true; }

}  // namespace hostvisor::fs
