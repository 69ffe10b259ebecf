// spdlog's compiled part (what libspdlog.so holds), built into the program
// instead of linked as a shared library. Debian ships spdlog and fmt only as
// shared libraries, and libspdlog.so needs libstdc++.so: mapping and
// relocating the three costs every VMM process about 2 MiB of resident
// memory, against some 100 KiB for the parts it uses compiled in (#13's
// footprint goal; hostvisor links libstdc++ statically for the same reason).
// Users compile with the definitions the packages' CMake files give
// (SPDLOG_COMPILED_LIB: the -inl.h definitions are not in the headers they
// include), so these files are where those definitions are compiled, once.
#include <spdlog/common-inl.h>
#include <spdlog/details/backtracer-inl.h>
#include <spdlog/details/log_msg-inl.h>
#include <spdlog/details/log_msg_buffer-inl.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/details/os-inl.h>
#include <spdlog/details/periodic_worker-inl.h>
#include <spdlog/details/registry-inl.h>
#include <spdlog/logger-inl.h>
#include <spdlog/pattern_formatter-inl.h>
#include <spdlog/sinks/ansicolor_sink-inl.h>
#include <spdlog/sinks/base_sink-inl.h>
#include <spdlog/sinks/sink-inl.h>
#include <spdlog/sinks/stdout_color_sinks-inl.h>
#include <spdlog/spdlog-inl.h>

#include <mutex>

// The templates that the headers declare but that spdlog's library
// instantiates: the sinks hostvisor uses, and the factory log.cpp calls.
template class SPDLOG_API spdlog::sinks::base_sink<std::mutex>;
template class SPDLOG_API spdlog::sinks::base_sink<spdlog::details::null_mutex>;
template class SPDLOG_API spdlog::sinks::ansicolor_sink<spdlog::details::console_mutex>;
template class SPDLOG_API spdlog::sinks::ansicolor_stderr_sink<spdlog::details::console_mutex>;
template SPDLOG_API std::shared_ptr<spdlog::logger> spdlog::stderr_color_mt<spdlog::synchronous_factory>(
    const std::string& logger_name, color_mode mode);
