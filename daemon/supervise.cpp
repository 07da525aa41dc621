// daemon/supervise.cpp — see supervise.hpp.
#include "supervise.hpp"

#include <algorithm>
#include <optional>

#include "log/named_cursor.hpp"
#include "server.hpp"

namespace shmbus::daemon {

using log::atomic;
using log::SlotState;

namespace {

std::string ms_text(Supervisor::Clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

// Whether the frame at p, a position read from shared memory (so checked
// before it is used), is settled.
bool settled_at(const log::Ring& ring, std::uint64_t p) {
  return p % ring.alignment() == 0 && ring.look(p).settled();
}

}  // namespace

bool Supervisor::unchanged(Seen& s, bool watch, const Key& key, Clock::time_point now) {
  if (!watch) {
    s = Seen{};
    return false;
  }
  if (!s.watching || s.key != key) {
    s = Seen{true, false, false, key, now};
    return false;
  }
  return true;
}

std::chrono::nanoseconds Supervisor::period(const std::vector<const TopicOptions*>& topics) {
  std::uint32_t shortest = 0;
  for (const TopicOptions* o : topics)
    for (std::uint32_t ms : {o->hung_producer_timeout_ms,
                             o->policy == Policy::Block ? o->slow_consumer_timeout_ms : 0u})
      if (ms != 0 && (shortest == 0 || ms < shortest)) shortest = ms;
  if (shortest == 0) return std::chrono::nanoseconds{0};
  return std::clamp<std::chrono::nanoseconds>(std::chrono::milliseconds(shortest) / 32,
                                              std::chrono::milliseconds(1), kLongestPeriod);
}

void SupervisionService::served(const Topics& topics) {
  std::vector<const TopicOptions*> options;
  for (const auto& [name, t] : topics) options.push_back(&t->options);
  period_ = Supervisor::period(options);
  supervisor_.forget_all_but(topics);
}

void SupervisionService::on_tick(const Topics& topics, Clock::time_point now) {
  for (const auto& [name, t] : topics) {
    const Supervisor::Actions a = supervisor_.scan(name, t->options, t->rings, now);
    revoked_ += a.revoked;
    evicted_ += a.evicted;
  }
}

void SupervisionService::add_stats(control::DaemonStats& stats) const {
  stats.revoked_claims += revoked_;
  stats.evicted_consumers += evicted_;
}

Supervisor::Actions Supervisor::scan(const std::string& topic, const TopicOptions& o,
                                     const std::vector<log::Ring>& rings, Clock::time_point now) {
  Actions a;
  if (rings.empty()) return a;
  const std::size_t per = std::size_t{rings[0].max_producers()} + rings[0].max_consumers();
  std::vector<Seen>& seen = seen_[topic];
  seen.resize(per * rings.size());
  for (std::uint32_t i = 0; i < rings.size(); ++i) {
    Seen* at = seen.data() + per * i;
    if (o.hung_producer_timeout_ms != 0)
      scan_producers(topic, rings[i], i, std::chrono::milliseconds(o.hung_producer_timeout_ms), at,
                     now, a);
    if (o.slow_consumer_timeout_ms != 0 && rings[i].policy() == Policy::Block)
      scan_cursors(topic, rings[i], i, std::chrono::milliseconds(o.slow_consumer_timeout_ms),
                   at + rings[i].max_producers(), now, a);
  }
  return a;
}

void Supervisor::scan_producers(const std::string& name, const log::Ring& ring,
                                std::uint32_t partition, Clock::duration timeout, Seen* seen,
                                Clock::time_point now, Actions& a) {
  for (std::uint32_t j = 0; j < ring.max_producers(); ++j) {
    log::ProducerSlot& s = ring.producer_slot(j);
    // Acquire loads: a snapshot to compare with the next scan's.
    const std::uint64_t control = atomic(s.control).load(std::memory_order_acquire);
    std::uint64_t bytes = atomic(s.claim_bytes).load(std::memory_order_acquire);
    const std::uint64_t position = atomic(s.claim_position).load(std::memory_order_relaxed);
    // An exclusive ring's offer records its claim by position alone: the
    // claim is [position, tail) while the frame there is not settled (layout.hpp).
    if (ring.exclusive() && bytes == 0) {
      const std::uint64_t tail = ring.tail().load(std::memory_order_acquire);
      if (tail > position && !settled_at(ring, position)) bytes = tail - position;
    }
    const std::uint64_t floor = atomic(s.claim_floor).load(std::memory_order_acquire);
    const bool open =
        log::state_of(control) == SlotState::Active && (bytes != 0 || floor != log::kNoClaimFloor);
    // The timeout runs from the frame's hand-out: a producer that waited for
    // room (back-pressure) before it is not hung, and is not revoked the
    // moment it gets room.
    constexpr std::uint64_t kNone = ~std::uint64_t{0};  // no frame handed out
    const std::uint64_t frame = open ? ring.pending_frame(position, bytes).value_or(kNone) : kNone;
    Seen& seen_slot = seen[j];
    if (!unchanged(seen_slot, open, {control, position, bytes, floor, frame}, now) ||
        seen_slot.acted || now - seen_slot.since < timeout)
      continue;
    const std::string who = "topic " + name + "." + std::to_string(partition) + ": producer pid " +
                            std::to_string(log::pid_of(control));
    if (frame != kNone) {
      // The snapshot's frame: a record that changed since only makes the CAS fail.
      seen_slot.acted = true;  // once per claim: it stays the same until the producer moves
      if (ring.revoke(frame)) {
        ++a.revoked;
        logf("warning", who + " held its claim at " + std::to_string(frame) + " open for over " +
                            ms_text(timeout) +
                            " (hung_producer_timeout_ms): revoked, consumers skip it; "
                            "other producers stop a ring past it until it commits or dies");
      }
      continue;
    }
    // Nothing handed out yet: waiting for room, or stopped before its frame
    // was written. Said once; revoked later if it hands the frame out and hangs.
    if (seen_slot.warned) continue;
    seen_slot.warned = true;
    ++a.stalled;
    logf("warning", who + " has been inside claim() for over " + ms_text(timeout) +
                        " (waiting for room, or stopped before its frame was written): "
                        "nothing to revoke; other producers stop a ring past it until it "
                        "continues or dies");
  }
}

void Supervisor::scan_cursors(const std::string& name, const log::Ring& ring,
                              std::uint32_t partition, Clock::duration timeout, Seen* seen,
                              Clock::time_point now, Actions& a) {
  const std::uint64_t tail = ring.tail().load(std::memory_order_acquire);
  for (std::uint32_t k = 0; k < ring.max_consumers(); ++k) {
    log::CursorSlot& s = ring.cursor_slot(k);
    // Acquire: pairs with the consumer's CAS to ACTIVE and its release store per batch.
    const std::uint64_t control = atomic(s.control).load(std::memory_order_acquire);
    const std::uint64_t position = atomic(s.position).load(std::memory_order_acquire);
    // Holding producers back: less than a segment (the largest frame) of
    // room before this cursor, so a producer's claim may get Full.
    // A consumer waiting at a frame nobody has committed (a hung producer's)
    // is not slow: evicting it would free nothing.
    const bool readable = settled_at(ring, position);
    const bool holding = log::state_of(control) == SlotState::Active && readable &&
                         position + ring.capacity() < tail + ring.segment_bytes();
    Seen& seen_slot = seen[k];
    if (!unchanged(seen_slot, holding, {control, position, 0, 0, 0}, now) || seen_slot.acted ||
        now - seen_slot.since < timeout)
      continue;
    seen_slot.acted = true;
    // A named cursor is durable by its owner's choice (layout.hpp, "Durable
    // named cursors"): never evicted, only reported.
    if (const std::string cursor = log::slot_name(s); !cursor.empty()) {
      logf("warning", "topic " + name + "." + std::to_string(partition) + ": named cursor '" +
                          cursor + "' stayed at " + std::to_string(position) +
                          ", a ring behind the tail, for " + ms_text(timeout) +
                          " (slow_consumer_timeout_ms): producers wait for it; named cursors "
                          "are not evicted (shmbus cursor delete removes one)");
      continue;
    }
    if (!ring.evict(s, control)) continue;  // it moved, left or died meanwhile
    ++a.evicted;
    logf("warning", "topic " + name + "." + std::to_string(partition) + ": consumer pid " +
                        std::to_string(log::pid_of(control)) + " stayed at " +
                        std::to_string(position) + ", a ring behind the tail, for " +
                        ms_text(timeout) +
                        " (slow_consumer_timeout_ms): evicted, producers move on");
  }
}

}  // namespace shmbus::daemon
