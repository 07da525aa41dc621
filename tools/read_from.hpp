// tools/read_from.hpp — where `tail` and `replay` start reading a partition
// (--from beginning | end | POSITION | TIME), and the consumer that does.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "shmbus/consumer.hpp"
#include "util.hpp"

namespace shmbus::cli {

struct ReadFrom {
  Consumer consumer;
  // --from TIME: skip the messages stamped before it (the first one at or
  // after it ends the skipping: producers' clocks may differ).
  std::optional<std::int64_t> since;
};

// Opens a consumer of `topic` with `co` (its partition, wait, gating and
// name set) at `from`, a string from_check() accepted. A durable topic's
// history older than the ring comes from its segment files (replay merge).
// Fails with a message naming the start when the consumer cannot open.
ReadFrom open_from(const Context& ctx, const std::string& topic, ConsumerOptions co,
                   const std::string& from);

// Whether a read stands still: below the tail as it was at the start every
// frame was claimed before the read began, so one that stays uncommitted
// (kStuck) means the start is not a frame start or a live producer stopped
// mid-write. Call after every poll with the consumer's position.
class StuckWatch {
 public:
  static constexpr auto kStuck = std::chrono::seconds(2);
  explicit StuckWatch(std::uint64_t position) : position_(position) {}
  // True when `position` is where it has been for kStuck.
  bool stuck(std::uint64_t position) {
    const auto now = std::chrono::steady_clock::now();
    if (position != position_) {
      position_ = position;
      since_ = now;
    }
    return now - since_ >= kStuck;
  }

 private:
  std::uint64_t position_;
  std::chrono::steady_clock::time_point since_ = std::chrono::steady_clock::now();
};

}  // namespace shmbus::cli
