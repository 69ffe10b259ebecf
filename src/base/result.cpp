#include "base/result.h"

namespace hostvisor {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kIo: return "I/O error";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kOutOfRange: return "out of range";
    case ErrorCode::kBusy: return "busy";
    case ErrorCode::kGuest: return "guest error";
    case ErrorCode::kInternal: return "internal error";
  }
  return "error";
}

}  // namespace hostvisor
