// Result<T>: a value or an Error. Every function that can fail on guest or
// user input returns one, so failures carry a message that says what to do
// instead of aborting the host process.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace hostvisor {

enum class ErrorCode {
  kInvalidArgument,  // bad flag, bad value from the user
  kNotFound,         // missing file, device, key
  kUnsupported,      // valid request this build or host cannot do
  kIo,               // a host system call failed
  kCorrupt,          // a file or structure is malformed
  kOutOfRange,       // an address or length outside what is allowed
  kBusy,             // already in use / overlapping
  kGuest,            // the guest did something architecturally invalid
  kInternal,         // a bug in hostvisor
};

const char* error_code_name(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  // A failed system call: appends strerror(err) to the context.
  static Error from_errno(std::string context, int err = errno) {
    return Error(ErrorCode::kIo, std::move(context) + ": " + std::strerror(err));
  }

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefixes context, for errors passed up through layers ("disk root.qcow2: ...").
  Error with_context(const std::string& context) const& { return Error(code_, context + ": " + message_); }

 private:
  ErrorCode code_;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : storage_(std::in_place_index<0>, std::move(value)) {}  // NOLINT(implicit)
  Result(Error error) : storage_(std::in_place_index<1>, std::move(error)) {}  // NOLINT(implicit)

  bool ok() const { return storage_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(storage_); }
  const T& value() const& { return std::get<0>(storage_); }
  T&& value() && { return std::get<0>(std::move(storage_)); }
  T value_or(T fallback) const& { return ok() ? value() : fallback; }

  const Error& error() const& { return std::get<1>(storage_); }
  Error&& error() && { return std::get<1>(std::move(storage_)); }

  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Error> storage_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), has_error_(true) {}  // NOLINT(implicit)

  bool ok() const { return !has_error_; }
  explicit operator bool() const { return ok(); }
  void value() const {}
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_{ErrorCode::kInternal, ""};
  bool has_error_ = false;
};

inline Result<void> ok() { return {}; }

}  // namespace hostvisor

// HV_TRY(expr): evaluates a Result; on error returns it from the enclosing
// function, otherwise yields the value (GNU statement expression; gcc and clang).
#define HV_TRY(expr)                                       \
  ({                                                       \
    auto&& hv_try_result_ = (expr);                        \
    if (!hv_try_result_.ok()) return std::move(hv_try_result_).error(); \
    std::move(hv_try_result_).value();                     \
  })
