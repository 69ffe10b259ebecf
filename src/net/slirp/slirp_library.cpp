#include "net/slirp/slirp_library.h"

#include <dlfcn.h>

#include <string>

namespace hostvisor::net {

namespace {

// The soname the build linked against (libslirp.so.0, package libslirp0).
constexpr const char* kSoname = "libslirp.so.0";

template <typename Fn>
bool resolve(void* handle, const char* name, Fn& out, std::string& missing) {
  out = reinterpret_cast<Fn>(::dlsym(handle, name));
  if (!out) missing += missing.empty() ? name : std::string(", ") + name;
  return out != nullptr;
}

Result<SlirpLibrary> load() {
  // RTLD_LOCAL: nothing else in the process resolves against slirp or GLib.
  void* handle = ::dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = ::dlerror();
    return Error(ErrorCode::kUnsupported, std::string("user network needs ") + kSoname +
                                              " (Debian package libslirp0): " + (why ? why : "dlopen failed"));
  }
  SlirpLibrary lib{};
  std::string missing;
  resolve(handle, "slirp_new", lib.new_instance, missing);
  resolve(handle, "slirp_cleanup", lib.cleanup, missing);
  resolve(handle, "slirp_input", lib.input, missing);
  resolve(handle, "slirp_pollfds_fill", lib.pollfds_fill, missing);
  resolve(handle, "slirp_pollfds_poll", lib.pollfds_poll, missing);
  resolve(handle, "slirp_handle_timer", lib.handle_timer, missing);
  resolve(handle, "slirp_add_hostfwd", lib.add_hostfwd, missing);
  resolve(handle, "slirp_remove_hostfwd", lib.remove_hostfwd, missing);
  resolve(handle, "slirp_state_version", lib.state_version, missing);
  resolve(handle, "slirp_state_save", lib.state_save, missing);
  resolve(handle, "slirp_state_load", lib.state_load, missing);
  if (!missing.empty()) {
    ::dlclose(handle);
    return Error(ErrorCode::kUnsupported,
                 std::string("user network: ") + kSoname + " lacks " + missing + " (libslirp 4.7 or newer is needed)");
  }
  return lib;  // the handle stays open for the life of the process
}

}  // namespace

Result<const SlirpLibrary*> slirp_library() {
  static const Result<SlirpLibrary> loaded = load();  // a static's first use is thread-safe
  if (!loaded.ok()) return loaded.error();
  return &loaded.value();
}

}  // namespace hostvisor::net
