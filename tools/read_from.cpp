#include "read_from.hpp"

#include <cerrno>

namespace shmbus::cli {

ReadFrom open_from(const Context& ctx, const std::string& topic, ConsumerOptions co,
                   const std::string& from) {
  std::optional<std::int64_t> since;
  if (from == "beginning") {
    co.start = ConsumerOptions::Start::Earliest;
  } else if (from == "end") {
    co.start = ConsumerOptions::Start::Latest;
  } else if (auto pos = parse_u64(from)) {
    co.start = ConsumerOptions::Start::Position;
    co.position = *pos;
  } else {
    // A time: the first message stamped at or after it (the library finds
    // it, in the files' batch headers and then the ring); `since` skips any
    // stamped earlier that a race let through.
    std::string why;
    since = parse_time(from, now_ns(), &why);
    if (!since) fail(kUsage, why);
    co.start = ConsumerOptions::Start::Time;
    co.time_ns = *since;
  }
  auto opened = Consumer::open(ctx.bus, topic, co);
  if (!opened) {
    if (co.start == ConsumerOptions::Start::Position && opened.error().code != ENOENT)
      fail(kFailed, "cannot start at position " + from + ": " + opened.error().message +
                        "; use a message's position (tail prints them), or --from beginning");
    fail(opened.error());
  }
  return {std::move(opened).value(), since};
}

}  // namespace shmbus::cli
