// shmbus replay TOPIC --into DEST: republish a range of a partition (from its
// segment files and then the ring, as any consumer reads) into another
// topic, as fast as possible or paced by the recorded timestamps.
//
// Pacing: message i is due at anchor + (stamp_i - stamp_0) / speed on
// CLOCK_MONOTONIC, the anchor being when the first one was sent. Every due
// time is computed from the anchor, never from the previous send, so a late
// send never delays the ones after it and no error adds up over a long
// replay. The wait is clock_nanosleep(TIMER_ABSTIME) to kSpinNs before the
// due time (a timer wake-up comes late), then a spin on the clock. Stamps that go backwards (two
// producers' clocks) are due at the highest stamp seen so far; unstamped messages (0) likewise.
#include <time.h>

#include <cerrno>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "histogram.hpp"
#include "read_from.hpp"
#include "shmbus/producer.hpp"

namespace shmbus::cli {
namespace {

constexpr std::int64_t kSpinNs = 200'000;

std::int64_t mono_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

class Pacer {
 public:
  explicit Pacer(double speed) : speed_(speed) {}

  // Waits until a message stamped `stamp` is due (at once when unpaced or
  // on the first message), or a stop is requested; returns its due time.
  // `now`: a clock reading taken since the last wait (the last send's), so
  // that a replay running behind its schedule reads the clock once per
  // message, not twice.
  std::int64_t wait(std::int64_t stamp, std::int64_t now) {
    if (speed_ <= 0) return 0;
    if (first_stamp_ == 0) {
      if (stamp == 0) return 0;  // nothing stamped yet: no clock to follow
      first_stamp_ = high_stamp_ = stamp;
      anchor_ = mono_ns();
      return anchor_;
    }
    high_stamp_ = std::max(high_stamp_, stamp);
    // In doubles: stamps come from shared memory, and any two may be far apart.
    const double ahead =
        (static_cast<double>(high_stamp_) - static_cast<double>(first_stamp_)) / speed_;
    const std::int64_t due = anchor_ + static_cast<std::int64_t>(std::min(ahead, 1e17));
    if (due <= now) return due;
    now = mono_ns();
    if (due - now > kSpinNs) {
      const std::int64_t wake = due - kSpinNs;
      const timespec at{static_cast<time_t>(wake / 1'000'000'000LL),
                        static_cast<long>(wake % 1'000'000'000LL)};
      while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) == EINTR &&
             !stop_requested()) {
      }
    }
    while (mono_ns() < due && !stop_requested()) {
    }
    return due;
  }

  bool paced() const noexcept { return speed_ > 0 && first_stamp_ != 0; }
  // The recorded time from the first stamp to the highest one.
  std::int64_t recorded_ns() const noexcept { return high_stamp_ - first_stamp_; }
  std::int64_t anchor() const noexcept { return anchor_; }

 private:
  double speed_;
  std::int64_t first_stamp_ = 0;
  std::int64_t high_stamp_ = 0;
  std::int64_t anchor_ = 0;
};

double us(double ns) {
  return ns / 1000.0;
}

}  // namespace

void run_replay(const Context& ctx, const ReplayOptions& o) {
  const TopicInfo info = describe_or_fail(ctx, o.topic);
  check_partition(info, o.partition);
  const TopicInfo dest_info = describe_or_fail(ctx, o.into);
  check_partition(dest_info, o.into_partition);
  if (o.into == o.topic && o.into_partition == o.partition)
    fail(kUsage,
         "--into names the partition being replayed; replay into another topic or "
         "partition");

  // Where the range ends: a position, or the first message stamped at or
  // after a time, and at the latest the tail as it is now (replay never
  // waits for messages not yet published).
  const std::uint64_t tail = info.partitions[o.partition].tail;
  std::uint64_t to_position = tail;
  std::optional<std::int64_t> to_time;
  const std::int64_t wall = now_ns();
  std::string why;
  if (auto pos = parse_u64(o.to)) {
    to_position = std::min(*pos, tail);
    if (auto from = parse_u64(o.from); from && *pos <= *from)
      fail(kUsage, "--to " + o.to + " is not after --from " + o.from);
  } else if (o.to != "end") {
    to_time = parse_time(o.to, wall, &why);
    if (!to_time) fail(kUsage, "--to: " + why);
    if (o.from != "beginning" && !parse_u64(o.from))
      if (auto from = parse_time(o.from, wall, &why); from && *to_time <= *from)
        fail(kUsage, "--to " + o.to + " is not after --from " + o.from);
  }

  ConsumerOptions co;
  co.partition = o.partition;
  co.wait = WaitStrategy::Futex;
  co.prefault = false;
  ReadFrom start = open_from(ctx, o.topic, co, o.from);
  Consumer& consumer = start.consumer;

  ProducerOptions po;
  po.partition = o.into_partition;
  auto opened = Producer::open(ctx.bus, o.into, po);
  if (!opened) fail(opened.error());
  Producer dest = std::move(opened).value();
  const auto full_timeout = *parse_duration(o.timeout, nullptr);  // checked by the command line

  const std::string where = "topic '" + o.topic + "' partition " + std::to_string(o.partition);
  Pacer pacer(o.speed);
  bench::Histogram lateness;
  std::uint64_t sent = 0, bytes = 0, lost = 0;
  std::uint64_t first_position = 0, range_end = 0;
  std::int64_t first_send = 0, last_send = 0, last_due = 0;
  bool done = false;
  std::vector<Property> props;

  auto handler = [&](const Message& m) {
    if (done) return;
    if (start.since) {
      if (m.timestamp_ns < *start.since) return;
      start.since.reset();
    }
    if (m.position >= to_position || (to_time && m.timestamp_ns >= *to_time)) {
      done = true;
      range_end = m.position;
      return;
    }
    props.clear();
    for (Property p : m.properties) props.push_back(p);
    const bool plain = m.key.empty() && props.empty();
    const std::int64_t due = pacer.wait(m.timestamp_ns, last_send);
    if (stop_requested()) {  // interrupted while waiting: not sent
      done = true;
      range_end = m.position;
      return;
    }
    std::int64_t deadline = 0;  // taken at the first Full
    for (;;) {
      const Status s = plain ? dest.offer(m.payload) : dest.offer(m.payload, m.key, props);
      if (s == Status::Ok) break;
      if (s != Status::Full)
        fail(kFailed, "publishing into topic '" + o.into + "' failed: " + to_string(s) +
                          " at the message at position " + std::to_string(m.position) + "; " +
                          std::to_string(sent) + " message(s) were replayed before it");
      if (stop_requested())
        fail(kFailed, "interrupted while topic '" + o.into + "' was full; " + std::to_string(sent) +
                          " message(s) were replayed, up to position " +
                          std::to_string(m.position) + ": go on with --from " +
                          std::to_string(m.position));
      if (deadline == 0) deadline = mono_ns() + full_timeout.count();
      if (mono_ns() >= deadline)
        fail(kFailed, "topic '" + o.into + "' partition " + std::to_string(o.into_partition) +
                          " stayed full for " + o.timeout + " (a slow consumer there); " +
                          std::to_string(sent) + " message(s) were replayed, up to position " +
                          std::to_string(m.position) + ": go on with --from " +
                          std::to_string(m.position));
      std::this_thread::yield();
    }
    // Unpaced, the clock is read once per batch (after poll), not per message.
    const std::int64_t now = pacer.paced() || sent == 0 ? mono_ns() : last_send;
    if (sent == 0) {
      first_position = m.position;
      first_send = pacer.paced() ? pacer.anchor() : now;  // paced: the anchor, just before
    }
    if (pacer.paced() && sent > 0)
      lateness.record(static_cast<std::uint64_t>(std::max<std::int64_t>(now - due, 0)));
    last_send = now;
    last_due = due;
    ++sent;
    bytes += m.payload.size();
    if (o.count != 0 && sent >= o.count) done = true;  // range_end: the consumer's position
  };

  StuckWatch watch(consumer.position());
  while (!done && !stop_requested()) {
    if (consumer.position() >= to_position) break;
    const std::uint64_t sent_before = sent;
    const auto max = static_cast<std::uint32_t>(
        o.count == 0 ? 1024 : std::min<std::uint64_t>(1024, o.count - sent));
    const PollResult r = consumer.poll_wait(handler, max, std::chrono::milliseconds(200));
    if (!pacer.paced() && sent > sent_before) last_send = mono_ns();
    const std::uint64_t at = consumer.position();
    const bool stuck = watch.stuck(at);
    switch (r.status) {
      case Status::Ok:
        break;
      case Status::Timeout:
        if (stuck)
          fail(kFailed, where + ": nothing is committed at position " + std::to_string(at) +
                            " although the tail is past it: " +
                            "--from is not a message's position, or a live producer is still " +
                            "writing it (stopped, or in a debugger?)");
        break;
      case Status::Lagged: {
        const LostRange l = consumer.lost();
        lost += l.to - l.from;
        std::fprintf(stderr,
                     "shmbus: %s: positions [%llu, %llu) were overwritten before replay read "
                     "them; continuing at %llu\n",
                     where.c_str(), static_cast<unsigned long long>(l.from),
                     static_cast<unsigned long long>(l.to), static_cast<unsigned long long>(l.to));
        break;
      }
      case Status::Corrupt:
        fail(kFailed, where + ": the frame at position " + std::to_string(consumer.position()) +
                          " is corrupt; " + std::to_string(sent) +
                          " message(s) were replayed before it");
      default:
        fail(kFailed, where + ": reading failed: " + to_string(r.status) + "; " +
                          std::to_string(sent) + " message(s) were replayed");
    }
  }
  if (!done || (o.count != 0 && sent >= o.count)) range_end = consumer.position();
  if (sent == 0) first_position = range_end;
  if (stop_requested())
    std::fprintf(stderr, "shmbus: interrupted; the report covers what was replayed\n");
  if (o.speed > 0 && sent > 0 && !pacer.paced())
    std::fprintf(stderr,
                 "shmbus: %s: no message replayed carries a timestamp (their producers opened "
                 "with timestamps = false), so nothing could be paced: replayed at full speed\n",
                 where.c_str());

  // Achieved speed and drift compare the last send with the anchor: how much
  // recorded time the replay covered, and how far its end was from due.
  const double elapsed = static_cast<double>(last_send - first_send);
  const bool paced = pacer.paced() && sent > 1;
  const double recorded = static_cast<double>(pacer.recorded_ns());
  const double intended = static_cast<double>(last_due - pacer.anchor());
  const double drift = static_cast<double>(last_send - last_due);
  nlohmann::json j = {{"messages", sent}, {"payload_bytes", bytes}, {"from", first_position},
                      {"to", range_end},  {"lost_bytes", lost},     {"elapsed_s", elapsed / 1e9}};
  if (paced) {
    j["paced"] = {{"speed", o.speed},
                  {"recorded_s", recorded / 1e9},
                  {"achieved_speed", elapsed > 0 ? recorded / elapsed : 0.0},
                  {"drift_s", drift / 1e9},
                  {"drift_percent", intended > 0 ? 100.0 * drift / intended : 0.0},
                  {"lateness_us",
                   {{"p50", us(lateness.quantile(0.5, 1))},
                    {"p99", us(lateness.quantile(0.99, 1))},
                    {"p999", us(lateness.quantile(0.999, 1))},
                    {"max", us(static_cast<double>(lateness.max()))}}}};
  }
  std::string out;
  if (o.json) {
    out = j.dump() + "\n";
  } else {
    char line[512];
    std::snprintf(line, sizeof line,
                  "replayed %llu message(s) (%s of payload) of %s, positions [%llu, %llu), into "
                  "topic '%s' partition %u in %.3f s\n",
                  static_cast<unsigned long long>(sent),
                  human_bytes(static_cast<double>(bytes)).c_str(), where.c_str(),
                  static_cast<unsigned long long>(first_position),
                  static_cast<unsigned long long>(range_end), o.into.c_str(), o.into_partition,
                  elapsed / 1e9);
    out += line;
    if (lost != 0) {
      std::snprintf(line, sizeof line, "lost: %llu bytes of positions were overwritten unread\n",
                    static_cast<unsigned long long>(lost));
      out += line;
    }
    if (paced) {
      std::snprintf(line, sizeof line,
                    "paced at speed %g: the recording spans %.6f s; achieved speed %.6f; the "
                    "last send was %+.1f us from due (%+.4f%% of the run)\n"
                    "lateness (sent - due): p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
                    o.speed, recorded / 1e9, elapsed > 0 ? recorded / elapsed : 0.0, us(drift),
                    intended > 0 ? 100.0 * drift / intended : 0.0, us(lateness.quantile(0.5, 1)),
                    us(lateness.quantile(0.99, 1)), us(lateness.quantile(0.999, 1)),
                    us(static_cast<double>(lateness.max())));
      out += line;
    }
  }
  write_stdout(out);
}

}  // namespace shmbus::cli
