// daemon/supervise.hpp — shmbusd's supervision of live clients: it revokes
// the claims of hung producers and evicts slow consumers from `block` topics
// (the protocol and why it is safe: lib/log/layout.hpp, "Supervision").
//
// As a service of the conductor (SupervisionService, service.hpp) it scans
// every topic from a periodic timer. Shared memory carries no timestamps, so the
// supervisor times what it sees: a producer slot whose claim record (control,
// claim_position, claim_bytes, claim_floor) stays the same from one scan to
// the next for the topic's hung_producer_timeout counted from its frame's
// hand-out (pending), or a cursor slot whose (control, position) stays the
// same for slow_consumer_timeout while it holds producers back and could read
// on, is acted on once. The timer runs at a 32nd of the
// shortest timeout (1..100 ms), so an action comes at most one period plus a
// scan after the timeout expires.
//
// Concurrency: used by the conductor thread only.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "log/ring.hpp"
#include "service.hpp"
#include "shmbus/options.hpp"

namespace shmbus::daemon {

class Supervisor {
 public:
  using Clock = std::chrono::steady_clock;
  struct Actions {
    std::uint32_t revoked = 0;  // claims revoked
    std::uint32_t evicted = 0;  // cursors evicted
    std::uint32_t stalled = 0;  // producers reported inside a claim with nothing handed out
  };

  // Scans the producer and cursor slots of every partition of one topic.
  Actions scan(const std::string& topic, const TopicOptions& options,
               const std::vector<log::Ring>& rings, Clock::time_point now);
  // Drops what was seen of topics no longer served (deleted).
  void forget_all_but(const Topics& served) {
    std::erase_if(seen_, [&](const auto& s) { return !served.contains(s.first); });
  }
  // The scan period for topics with these options: a 32nd of the
  // shortest timeout, clamped to 1..100 ms; zero (no scans) when no topic
  // sets a timeout.
  static constexpr std::chrono::milliseconds kLongestPeriod{100};
  static std::chrono::nanoseconds period(const std::vector<const TopicOptions*>& topics);

 private:
  using Key = std::array<std::uint64_t, 5>;
  struct Seen {
    bool watching = false;
    bool acted = false;
    bool warned = false;  // said that there is nothing to revoke
    Key key{};
    Clock::time_point since{};
  };
  // True when `key` was seen unchanged since s.since; starts over otherwise.
  static bool unchanged(Seen& s, bool watch, const Key& key, Clock::time_point now);
  void scan_producers(const std::string& name, const log::Ring& ring, std::uint32_t partition,
                      Clock::duration timeout, Seen* seen, Clock::time_point now, Actions& a);
  void scan_cursors(const std::string& name, const log::Ring& ring, std::uint32_t partition,
                    Clock::duration timeout, Seen* seen, Clock::time_point now, Actions& a);

  // Per topic: for each partition, its producer slots, then its cursor slots.
  std::map<std::string, std::vector<Seen>> seen_;
};

// The supervisor as a service of the conductor.
class SupervisionService final : public Service {
 public:
  void served(const Topics& topics) override;
  std::chrono::nanoseconds period() const override { return period_; }
  void on_tick(const Topics& topics, Clock::time_point now) override;
  void add_stats(control::DaemonStats& stats) const override;

 private:
  Supervisor supervisor_;
  std::chrono::nanoseconds period_{0};
  std::uint64_t revoked_ = 0;
  std::uint64_t evicted_ = 0;
};

}  // namespace shmbus::daemon
