// libslirp, opened with dlopen() when the first user-mode NIC is made
// instead of being linked: libslirp and the GLib and PCRE2 it pulls in
// would otherwise be mapped, relocated and initialised in every VMM
// process, about 0.8 MiB of resident memory that most VMs (no NAT NIC)
// never use (#13's footprint goal).
//
// The table holds exactly the entry points hostvisor calls, typed from
// libslirp.h, so a call through it is checked by the compiler as a direct
// call would be. It is loaded once per process and never unloaded.
#pragma once

#include <libslirp.h>

#include "base/result.h"

namespace hostvisor::net {

struct SlirpLibrary {
  decltype(&::slirp_new) new_instance;
  decltype(&::slirp_cleanup) cleanup;
  decltype(&::slirp_input) input;
  decltype(&::slirp_pollfds_fill) pollfds_fill;
  decltype(&::slirp_pollfds_poll) pollfds_poll;
  decltype(&::slirp_handle_timer) handle_timer;
  decltype(&::slirp_add_hostfwd) add_hostfwd;
  decltype(&::slirp_remove_hostfwd) remove_hostfwd;
  decltype(&::slirp_state_version) state_version;
  decltype(&::slirp_state_save) state_save;
  decltype(&::slirp_state_load) state_load;
};

// The loaded library, or an error naming the library and the Debian
// package that provides it. Thread-safe; the first call loads it.
Result<const SlirpLibrary*> slirp_library();

}  // namespace hostvisor::net
