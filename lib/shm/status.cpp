#include "shmbus/status.hpp"

namespace shmbus {

const char* to_string(Status s) noexcept {
  switch (s) {
    case Status::Ok:
      return "ok";
    case Status::Empty:
      return "empty";
    case Status::Full:
      return "full";
    case Status::TooLarge:
      return "too large";
    case Status::Lagged:
      return "lagged";
    case Status::Corrupt:
      return "corrupt";
    case Status::Evicted:
      return "evicted";
    case Status::Timeout:
      return "timeout";
    case Status::Invalid:
      return "invalid";
    case Status::SpillFailed:
      return "spill failed";
    case Status::Revoked:
      return "revoked";
  }
  return "unknown";
}

}  // namespace shmbus
