// How a disk image uses the host page cache.
//   writeback: through the page cache; a guest flush is fdatasync (the default).
//   none:      O_DIRECT, bypassing the page cache; a flush is still fdatasync
//              (the drive's own cache); unaligned buffers go through bounce buffers.
//   unsafe:    through the page cache and flushes are ignored (scratch disks only).
#pragma once

#include <string>

#include "base/result.h"

namespace hostvisor::block {

enum class CacheMode { kWriteback, kNone, kUnsafe };

const char* cache_mode_name(CacheMode mode);
Result<CacheMode> parse_cache_mode(const std::string& text);

}  // namespace hostvisor::block
