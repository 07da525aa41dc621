// shmbus/status.hpp — the two error regimes of the public API.
//
// Hot path (offer, claim, poll): `noexcept`, returns a `[[nodiscard]] Status`.
// Set-up path (create, open, attach): returns `Result<T>`, a value or an
// `Error` that names the file or object and what is wrong with it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace shmbus {

enum class Status : std::uint8_t {
  Ok,        // done
  Empty,     // consumer: no committed frame at the cursor yet
  Full,      // producer, `block` policy: the slowest consumer is a ring behind
  TooLarge,  // producer: the frame does not fit in one segment
  Lagged,    // consumer, `overwrite` policy: producers lapped the cursor; see lost()
  Corrupt,   // consumer: the frame at the cursor fails validation
  Evicted,   // consumer: shmbusd took its cursor slot (too slow on `block`); see rejoin()
  Timeout,   // a bounded wait ran out
  Invalid,   // an argument is out of range (e.g. an unknown claim)
  Revoked,   // producer: the claim was open past the topic's hung_producer_timeout and
             // shmbusd turned it into padding; nothing was published, publish again
  SpillFailed,  // producer, durable topic: the spiller stopped on an error (a full disk,
                // EIO) before the message was durable; `shmbus topic describe` says why
};

[[nodiscard]] const char* to_string(Status s) noexcept;

// What Consumer::poll did.
struct PollResult {
  Status status = Status::Empty;
  std::uint32_t count = 0;  // messages delivered before `status` ended the batch
};

struct Error {
  int code = 0;         // errno value where one applies, else 0
  std::string message;  // names the object and the problem, ready to print
};

// A value or an Error. std::expected is C++23; this is the part we need.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error e) : v_(std::move(e)) {}      // NOLINT
  explicit operator bool() const noexcept { return v_.index() == 0; }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Done {};  // the value of a Result that carries no value
using Outcome = Result<Done>;

}  // namespace shmbus
