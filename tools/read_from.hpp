// tools/read_from.hpp — where `tail` and `replay` start reading a partition
// (--from beginning | end | POSITION | TIME), and the consumer that does.
#pragma once

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

}  // namespace shmbus::cli
