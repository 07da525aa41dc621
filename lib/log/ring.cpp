#include "log/ring.hpp"

#include "log/named_cursor.hpp"

#include <sched.h>
#include <sys/random.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "log/properties.hpp"
#include "shm/futex.hpp"
#include "shm/name.hpp"
#include "shm/placement.hpp"
#include "shm/process.hpp"

namespace shmbus::log {
namespace {

Error bad(const std::string& what) {
  return Error{EINVAL, what};
}

Outcome check_options(const TopicOptions& o) {
  auto pow2 = [](std::uint64_t v) { return std::has_single_bit(v); };
  if (o.partitions < 1 || o.partitions > 1024)
    return bad("partitions = " + std::to_string(o.partitions) + ": must be 1..1024");
  if (!pow2(o.segment_bytes) || o.segment_bytes < 4096 || o.segment_bytes > (1ull << 30))
    return bad("segment_bytes = " + std::to_string(o.segment_bytes) +
               ": must be a power of two from 4096 to 1 GiB");
  if (!pow2(o.segment_count) || o.segment_count < 2 || o.segment_count > 1024)
    return bad("segment_count = " + std::to_string(o.segment_count) +
               ": must be a power of two from 2 to 1024");
  if (o.segment_bytes * o.segment_count > (1ull << 36))
    return bad("segment_bytes x segment_count is over 64 GiB");
  if (!pow2(o.frame_alignment) || o.frame_alignment < kMinFrameAlignment ||
      o.frame_alignment > 4096)
    return bad("frame_alignment = " + std::to_string(o.frame_alignment) +
               ": must be a power of two from 32 to 4096");
  if (o.max_producers < 1 || o.max_producers > 1024)
    return bad("max_producers = " + std::to_string(o.max_producers) + ": must be 1..1024");
  if (o.max_consumers < 1 || o.max_consumers > 1024)
    return bad("max_consumers = " + std::to_string(o.max_consumers) + ": must be 1..1024");
  if (o.policy != Policy::Block && o.policy != Policy::Overwrite) return bad("unknown policy");
  if (o.slow_consumer_timeout_ms != 0 && o.policy != Policy::Block)
    return bad("slow_consumer_timeout_ms is only for the block policy");
  if (o.fsync != Fsync::Never && o.fsync != Fsync::Interval && o.fsync != Fsync::Always)
    return bad("unknown fsync mode");
  if (o.durable && o.fsync == Fsync::Interval &&
      (o.fsync_interval_ms < 1 || o.fsync_interval_ms > 60000))
    return bad("fsync_interval_ms = " + std::to_string(o.fsync_interval_ms) + ": must be 1..60000");
  if (!o.durable && (o.retention_bytes != 0 || o.retention_ms != 0))
    return bad("retention_bytes and retention_ms are for durable topics (their segment files)");
  if (o.retention_ms > (1ull << 40))
    return bad("retention_ms = " + std::to_string(o.retention_ms) +
               ": at most 2^40 (34,000 years)");
  return Done{};
}

std::uint64_t ring_data_offset(std::uint32_t max_producers) {
  return align_up(sizeof(RingHeader) + std::uint64_t{max_producers} * sizeof(ProducerSlot), 4096);
}

std::uint64_t random_odd() {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != sizeof v) v = 0x9e3779b97f4a7c15ull ^ shm::self().start_time;
  return v | 1;
}

}  // namespace

std::string ring_path(const std::string& dir, std::string_view topic, std::uint32_t partition) {
  return dir + "/" + std::string(topic) + "." + std::to_string(partition) + ".log";
}
std::string cursor_path(const std::string& dir, std::string_view topic, std::uint32_t partition) {
  return dir + "/" + std::string(topic) + "." + std::to_string(partition) + ".cur";
}

Outcome Ring::create(const std::string& dir, std::string_view topic, std::uint32_t partition,
                     const TopicOptions& o) {
  if (auto ok = check_options(o); !ok) return ok.error();
  const std::uint64_t data_offset = ring_data_offset(o.max_producers);
  const std::uint64_t capacity = o.segment_bytes * o.segment_count;
  int node = -1;
  if (o.placement.kind != Placement::Kind::Anywhere) {
    auto topo = shm::Topology::host();
    if (!topo) return topo.error();
    auto chosen = topo->choose_node(o.placement, ::sched_getcpu());
    if (!chosen) return chosen.error();
    node = *chosen;
  }
  shm::MapOptions map{.writable = true,
                      .prefault = o.prefault,
                      .huge_pages = o.huge_pages,
                      .lock = o.lock_memory,
                      .numa_node = node};
  auto ring = shm::create_file(
      ring_path(dir, topic, partition), shm::FileKind::Ring, data_offset + capacity,
      static_cast<std::uint32_t>(data_offset), o.mode, map, [&](std::byte* base) {
        auto* h = reinterpret_cast<RingHeader*>(base);
        h->config = RingConfig{
            .segment_bytes = o.segment_bytes,
            .capacity = capacity,
            .salt = random_odd(),
            .data_offset = data_offset,
            .segment_count = o.segment_count,
            .frame_alignment = o.frame_alignment,
            .max_producers = o.max_producers,
            .partition = partition,
            .partitions = o.partitions,
            .policy = static_cast<std::uint8_t>(o.policy),
            .exclusive = static_cast<std::uint8_t>(o.exclusive_producer ? 1 : 0),
            .reserved = {},
            .features = 0,
            .reserved_end = {},
        };
        h->supervision = SupervisionConfig{.hung_producer_timeout_ms = o.hung_producer_timeout_ms,
                                           .slow_consumer_timeout_ms = o.slow_consumer_timeout_ms};
        h->durability = DurabilityConfig{.durable = static_cast<std::uint8_t>(o.durable ? 1 : 0),
                                         .fsync = static_cast<std::uint8_t>(o.fsync),
                                         .reserved = 0,
                                         .fsync_interval_ms = o.fsync_interval_ms};
        h->retention = RetentionConfig{.bytes = o.retention_bytes, .ms = o.retention_ms};
      });
  if (!ring) return ring.error();
  const std::uint64_t cursor_bytes =
      align_up(sizeof(CursorHeader) + std::uint64_t{o.max_consumers} * sizeof(CursorSlot), 4096);
  auto cur = shm::create_file(cursor_path(dir, topic, partition), shm::FileKind::Cursors,
                              cursor_bytes, sizeof(CursorHeader), o.mode,
                              shm::MapOptions{.writable = true}, [&](std::byte* base) {
                                auto* h = reinterpret_cast<CursorHeader*>(base);
                                h->config.max_consumers = o.max_consumers;
                                h->config.partition = partition;
                                if (o.durable) {  // the spiller's cursor, parked at 0
                                  auto* s = reinterpret_cast<CursorSlot*>(base + sizeof *h);
                                  write_slot_name(*s, kSpillCursor);
                                  s->position = 0;
                                  s->control = make_control(SlotState::Active, 1, kNoHolder);
                                }
                              });
  if (!cur) {
    (void)shm::remove_file(ring_path(dir, topic, partition));
    return cur.error();
  }
  return Done{};
}

Result<Ring> Ring::open(const std::string& dir, std::string_view topic, std::uint32_t partition,
                        bool writable_log, bool prefault) {
  if (auto ok = shm::check_name("topic", topic); !ok) return ok.error();
  const std::string rpath = ring_path(dir, topic, partition);
  auto log =
      shm::open_file(rpath, shm::FileKind::Ring, {.writable = writable_log, .prefault = prefault});
  if (!log) return log.error();
  // Cursor slots are written by consumers and producers alike (see layout.hpp).
  const std::string cpath = cursor_path(dir, topic, partition);
  auto cur = shm::open_file(cpath, shm::FileKind::Cursors, {.writable = true, .prefault = true});
  if (!cur) return cur.error();
  return adopt(std::move(log).value(), std::move(cur).value(), rpath, cpath, topic, partition);
}

Result<Ring> Ring::open_observer(const std::string& dir, std::string_view topic,
                                 std::uint32_t partition) {
  if (auto ok = shm::check_name("topic", topic); !ok) return ok.error();
  const std::string rpath = ring_path(dir, topic, partition);
  auto log = shm::open_file(rpath, shm::FileKind::Ring, {.writable = false, .prefault = false});
  if (!log) return log.error();
  const std::string cpath = cursor_path(dir, topic, partition);
  auto cur = shm::open_file(cpath, shm::FileKind::Cursors, {.writable = false, .prefault = false});
  if (!cur) return cur.error();
  return adopt(std::move(log).value(), std::move(cur).value(), rpath, cpath, topic, partition);
}

Result<Ring> Ring::open_fds(int ring_fd, int cursor_fd, std::string_view topic,
                            std::uint32_t partition, bool writable_log, bool prefault) {
  const std::string rpath = "ring of " + std::string(topic) + "." + std::to_string(partition);
  const std::string cpath = "cursors of " + std::string(topic) + "." + std::to_string(partition);
  auto log = shm::open_fd(ring_fd, rpath, shm::FileKind::Ring,
                          {.writable = writable_log, .prefault = prefault});
  if (!log) return log.error();
  auto cur =
      shm::open_fd(cursor_fd, cpath, shm::FileKind::Cursors, {.writable = true, .prefault = true});
  if (!cur) return cur.error();
  return adopt(std::move(log).value(), std::move(cur).value(), rpath, cpath, topic, partition);
}

Result<Ring> Ring::adopt(shm::Mapping log, shm::Mapping cur, const std::string& rpath,
                         const std::string& cpath, std::string_view topic,
                         std::uint32_t partition) {
  // Copy the geometry out of shared memory once, then check the copy.
  RingConfig c{};
  std::memcpy(&c, log.data() + offsetof(RingHeader, config), sizeof c);
  CursorConfig cc{};
  std::memcpy(&cc, cur.data() + offsetof(CursorHeader, config), sizeof cc);
  auto damaged = [&](const std::string& path, const std::string& why) {
    return Error{EPROTO, path + " is damaged: " + why};
  };
  TopicOptions as_options;
  as_options.partitions = c.partitions;
  as_options.segment_bytes = c.segment_bytes;
  as_options.segment_count = c.segment_count;
  as_options.frame_alignment = c.frame_alignment;
  as_options.max_producers = c.max_producers;
  as_options.max_consumers = cc.max_consumers;
  as_options.policy = static_cast<Policy>(c.policy);
  if (auto ok = check_options(as_options); !ok) return damaged(rpath, ok.error().message);
  if (c.capacity != c.segment_bytes * c.segment_count) return damaged(rpath, "capacity mismatch");
  if (c.data_offset != ring_data_offset(c.max_producers) ||
      c.data_offset + c.capacity != log.size())
    return damaged(rpath, "data offset or size mismatch");
  if ((c.salt & 1) == 0) return damaged(rpath, "salt is even");
  if (c.partition != partition || c.partitions <= partition)
    return damaged(rpath, "partition number mismatch");
  if ((c.features & ~kKnownFeatures) != 0) {
    char bits[16];
    std::snprintf(bits, sizeof bits, "0x%x", c.features & ~kKnownFeatures);
    return Error{ENOTSUP, rpath + " uses features (" + bits +
                              ") that this shmbus does not know: open it with the shmbus that "
                              "made the topic, or a newer one"};
  }
  if (cc.partition != partition ||
      sizeof(CursorHeader) + std::uint64_t{cc.max_consumers} * sizeof(CursorSlot) > cur.size())
    return damaged(cpath, "slot table does not fit the file");

  Ring r;
  r.data_ = log.data() + c.data_offset;
  r.capacity_ = c.capacity;
  r.segment_bytes_ = c.segment_bytes;
  r.salt_ = c.salt;
  r.alignment_ = c.frame_alignment;
  r.max_producers_ = c.max_producers;
  r.max_consumers_ = cc.max_consumers;
  r.partitions_ = c.partitions;
  r.policy_ = static_cast<Policy>(c.policy);
  r.exclusive_ = c.exclusive != 0;
  r.name_ = std::string(topic) + "." + std::to_string(partition);
  r.log_ = std::move(log);
  r.cursors_ = std::move(cur);
  return r;
}

void Ring::wake() const noexcept {
  atomic(cursor_header()->wake_seq).fetch_add(1, std::memory_order_release);
  shm::futex_wake_all(&cursor_header()->wake_seq);
}

void Ring::write_pad(std::uint64_t p, std::uint64_t bytes) const noexcept {
  FrameHeader* f = frame_at(p);
  f->length = static_cast<std::uint32_t>(bytes - sizeof(FrameHeader));
  f->type = FrameType::Pad;
  f->flags = 0;
  f->timestamp = 0;
  publish(f, p);
}

bool Ring::revoke(std::uint64_t p) const noexcept {
  std::uint64_t pending = pending_word(p);
  // SYNC POINT: acquires the header through the producer's release of
  // pending (hand_out) and releases it to consumers that load skip(p).
  if (!atomic(frame_at(p)->commit)
           .compare_exchange_strong(pending, skip_word(p), std::memory_order_seq_cst))
    return false;
  wake_sleepers();
  return true;
}

std::optional<std::uint64_t> Ring::pending_frame(std::uint64_t p,
                                                 std::uint64_t bytes) const noexcept {
  // An unaligned p could name another frame's ready word, so refuse it.
  if (bytes == 0 || p % alignment_ != 0) return std::nullopt;
  const auto pending_at = [&](std::uint64_t q) {
    return atomic(frame_at(q)->commit).load(std::memory_order_acquire) == pending_word(q);
  };
  if (pending_at(p)) return p;
  const std::uint64_t next = p + segment_left(p);
  if (next - p < bytes && pending_at(next)) return next;
  return std::nullopt;
}

bool Ring::revoke_claim(std::uint64_t p, std::uint64_t bytes) const noexcept {
  // A stale record only makes the CAS fail: pending(q) names one frame.
  const std::optional<std::uint64_t> frame = pending_frame(p, bytes);
  return frame && revoke(*frame);
}

bool Ring::evict(CursorSlot& s, std::uint64_t active) const noexcept {
  if (state_of(active) != SlotState::Active) return false;
  // Seq_cst: a producer's gate that runs after this sees the slot not ACTIVE.
  if (!atomic(s.control).compare_exchange_strong(active, with_state(active, SlotState::Evicted),
                                                 std::memory_order_seq_cst))
    return false;
  // A consumer falling asleep checks its slot too: else it would sleep to
  // its deadline if no producer commits again.
  wake_sleepers();
  return true;
}

std::uint64_t Ring::gate(std::uint64_t tail_seen, const ProducerSlot* self,
                         bool cursors) const noexcept {
  // Pairs with the seq_cst store of ACTIVE + load of tail in Consumer::open,
  // and with the seq_cst store of a claim's lower bound before its fetch_add
  // in Producer (the join and claim protocols in layout.hpp).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::uint64_t g = tail_seen;
  for (std::uint32_t i = 0; cursors && i < max_consumers_; ++i) {
    CursorSlot& s = cursor_slot(i);
    if (state_of(atomic(s.control).load(std::memory_order_acquire)) != SlotState::Active) continue;
    g = std::min(
        g, atomic(s.position)
               .load(std::memory_order_acquire));  // SYNC POINT: consumer's release store per batch
  }
  for (std::uint32_t i = 0; !exclusive_ && i < max_producers_; ++i) {
    ProducerSlot& s = producer_slot(i);
    if (&s == self) continue;
    const std::uint64_t floor = atomic(s.claim_floor).load(std::memory_order_seq_cst);
    if (floor != kNoClaimFloor) g = std::min(g, floor & ~std::uint64_t{1});
  }
  return g;
}

bool holder_alive(std::uint64_t c, std::uint64_t& stamp) {
  shm::ProcessId h = holder_of(c, atomic(stamp).load(std::memory_order_relaxed));
  if (h.pid == kNoHolder) return false;
  if (h.start_time == 0) h.start_time = shm::start_time_of(static_cast<pid_t>(h.pid));
  return shm::alive(h);
}

namespace {
// A slot is reapable when it is taken (Active, Evicted, or Joining: being
// filled in or being reaped by someone who may have died too) and its holder,
// named in the control word c, is dead. A holder that has not stamped the
// slot yet is judged by its pid alone (layout.hpp, SlotState).
bool holder_dead(std::uint64_t c, std::uint64_t& stamp) {
  const SlotState state = state_of(c);
  if (state != SlotState::Active && state != SlotState::Joining && state != SlotState::Evicted)
    return false;
  return !holder_alive(c, stamp);
}
}  // namespace

std::optional<std::uint64_t> Ring::abandoned_until(std::uint64_t p) const noexcept {
  if (p % alignment_ != 0) return std::nullopt;
  auto word_at = [&](std::uint64_t q) {
    return atomic(frame_at(q)->commit).load(std::memory_order_acquire);
  };
  if (settled(word_at(p), p)) return std::nullopt;
  // Whoever claimed p made the claim with a fetch_add (or, exclusive, a
  // store) that this load sees; the seq_cst fence then orders the slot loads
  // after it (the argument in layout.hpp, "Abandoned claims").
  const std::uint64_t t = tail().load(std::memory_order_seq_cst);
  if (t <= p) return std::nullopt;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto holder_alive = [](ProducerSlot& s) {
    const std::uint64_t c = atomic(s.control).load(std::memory_order_acquire);
    return state_of(c) != SlotState::Free && !holder_dead(c, s.stamp);
  };
  std::uint64_t bound = t;  // no live claim starts below it, but at p
  if (exclusive_) {
    // Only slot 0 ever claims; everything before its last claim is settled.
    if (holder_alive(producer_slot(0))) return std::nullopt;
  } else {
    for (std::uint32_t i = 0; i < max_producers_; ++i) {
      ProducerSlot& s = producer_slot(i);
      const std::uint64_t floor = atomic(s.claim_floor).load(std::memory_order_seq_cst);
      if (floor == kNoClaimFloor || !holder_alive(s)) continue;
      const std::uint64_t f = floor & ~std::uint64_t{1};
      if (f <= p) return std::nullopt;  // a live claim may cover p
      bound = std::min(bound, f);
    }
  }
  // A claim that ended meanwhile settled p before its floor went (release).
  const detail::FrameLook f = look(p);
  if (f.settled()) return std::nullopt;
  if (f.state == detail::FrameState::Pending)  // handed out by a dead producer
    return f.next != 0 ? std::optional<std::uint64_t>(f.next) : std::nullopt;
  // Go on at the next frame that was started in this lap (its commit word
  // carries its position), else at the segment end or the bound.
  const std::uint64_t end = std::min(bound, p + segment_left(p));
  for (std::uint64_t q = p + alignment_; q < end; q += alignment_) {
    const std::uint64_t x = word_at(q);
    if (x == commit_word(q) || x == skip_word(q) || x == pending_word(q)) return q;
  }
  return end;
}

std::uint32_t Ring::reap_dead_consumers(std::uint64_t below) const noexcept {
  std::uint32_t freed = 0;
  for (std::uint32_t i = 0; i < max_consumers_; ++i) {
    CursorSlot& s = cursor_slot(i);
    std::uint64_t c = atomic(s.control).load(std::memory_order_acquire);
    if (state_of(c) == SlotState::Active &&
        atomic(s.position).load(std::memory_order_acquire) >= below)
      continue;
    if (!holder_dead(c, s.stamp)) continue;
    // A dead owner that counted itself among the futex waiters is uncounted
    // (layout.hpp, CursorSlot::asleep); the CAS takes back only its count.
    std::uint32_t mark = asleep_mark(generation_of(c));
    if (atomic(s.asleep).compare_exchange_strong(mark, 0, std::memory_order_acq_rel))
      atomic(cursor_header()->waiters).fetch_sub(1, std::memory_order_release);
    // A named cursor outlives its holder (layout.hpp, "Durable named cursors").
    if (state_of(c) == SlotState::Active && atomic(s.name[0]).load(std::memory_order_relaxed) != 0)
      continue;
    // The CAS on the whole control word fails if the slot changed owner meanwhile.
    if (atomic(s.control).compare_exchange_strong(c, with_state(c, SlotState::Free),
                                                  std::memory_order_acq_rel))
      ++freed;
  }
  return freed;
}

std::uint32_t Ring::reap_dead_producers() const noexcept {
  std::uint32_t freed = 0;
  for (std::uint32_t i = 0; i < max_producers_; ++i) {
    ProducerSlot& s = producer_slot(i);
    std::uint64_t c = atomic(s.control).load(std::memory_order_acquire);
    if (!holder_dead(c, s.stamp)) continue;
    // Read the dead owner's claim record before taking the slot: whoever
    // rewrites the record (a joiner, another reaper) changes the control word
    // first, to a new generation (2^30 of them before one repeats), so a successful CAS from c
    // below proves this is still the dead owner's record. An exclusive ring's claim ends at the
    // tail (layout.hpp, ProducerSlot); a position past the tail is damage, and fails the sanity
    // check.
    const std::uint64_t tail_now = tail().load(std::memory_order_acquire);
    const std::uint64_t recorded = atomic(s.claim_bytes).load(std::memory_order_acquire);
    std::uint64_t p = atomic(s.claim_position).load(std::memory_order_relaxed);
    const std::uint64_t floor = atomic(s.claim_floor).load(std::memory_order_relaxed);
    const std::uint64_t bytes =
        !exclusive_ ? recorded : (tail_now >= p ? tail_now - p : ~std::uint64_t{0});
    const std::uint64_t end = p + bytes;
    const bool sane = p % alignment_ == 0 && bytes % alignment_ == 0 && bytes <= 2 * segment_bytes_;
    // A producer that died waiting for room holds a claim a ring ahead of
    // unread frames (`block`) or of another producer's open claim: padding it
    // now would overwrite them. Leave the slot as it is to a later reap.
    if (sane && bytes != 0 && end > gate(tail_now, &s, policy_ == Policy::Block) + capacity_)
      continue;
    // Take it by a CAS to a new generation naming us its holder, also from
    // Joining (a joiner or a reaper that died): other reapers leave it to us
    // until it is Free (if we die, the next one redoes the walk: the record
    // is intact), and one that stalled before this CAS fails it.
    const std::optional<std::uint64_t> taken = take_slot(s.control, s.stamp, c, shm::self());
    if (!taken) continue;  // somebody else took it meanwhile
    const std::uint64_t reaping = *taken;
    // Pad what the dead producer left uncommitted in its exact claim record;
    // a part it committed already (a frame or a boundary PAD) is skipped.
    // Redoing this after a reaper died half-way is harmless for that reason.
    // The gate's loads before the pad's stores, as in a producer (layout.hpp,
    // "Slow consumer": an evicted in-place reader's check relies on it).
    std::atomic_thread_fence(std::memory_order_release);
    while (sane && p < end) {
      // A frame it handed out (header written) is revoked, like a hung one's.
      (void)revoke(p);
      const detail::FrameLook f = look(p);
      if (f.damaged()) break;  // leave the rest to the consumers' checks
      if (f.settled()) {
        p = f.next;
        continue;
      }
      std::uint64_t n = std::min(end - p, segment_left(p));
      write_pad(p, n);
      p += n;
    }
    // Release: the pads before "no claim" (another producer's gate may then lap them).
    std::uint64_t was = recorded;
    atomic(s.claim_bytes)
        .compare_exchange_strong(was, 0, std::memory_order_release, std::memory_order_relaxed);
    was = floor;
    atomic(s.claim_floor)
        .compare_exchange_strong(was, kNoClaimFloor, std::memory_order_release,
                                 std::memory_order_relaxed);
    std::uint64_t expected = reaping;
    if (atomic(s.control).compare_exchange_strong(expected, with_state(reaping, SlotState::Free),
                                                  std::memory_order_acq_rel))
      ++freed;
  }
  return freed;
}

Status Ring::decode_headers(const FrameHeader& h, std::uint64_t p, const std::byte* body,
                            std::uint64_t body_room, std::byte* props_copy,
                            Message& out) const noexcept {
  if (h.length > body_room || (h.flags & kMustUnderstandFlags & ~kKnownMustUnderstandFlags) != 0)
    return Status::Corrupt;
  std::uint64_t left = h.length;
  const std::byte* at = body;
  out.position = p;
  out.timestamp_ns = h.timestamp;
  out.key = {};
  out.properties = PropertyView{};
  if ((h.flags & kHasKey) != 0) {
    std::uint16_t n;
    if (left < 2) return Status::Corrupt;
    std::memcpy(&n, at, 2);
    if (left - 2 < n) return Status::Corrupt;
    out.key = {reinterpret_cast<const char*>(at + 2), n};
    at += 2 + n;
    left -= 2 + n;
  }
  if ((h.flags & kHasProperties) != 0) {
    std::uint32_t n;
    if (left < 4) return Status::Corrupt;
    std::memcpy(&n, at, 4);
    if (left - 4 < n) return Status::Corrupt;
    const std::byte* props = at + 4;
    if (props_copy != nullptr) {
      std::memcpy(props_copy, props, n);
      props = props_copy;
    }
    // Check the (private) copy once; PropertyView then walks it unchecked.
    if (!valid_encoding({props, n})) return Status::Corrupt;
    out.properties = PropertyView({props, n});
    at += 4 + n;
    left -= 4 + n;
  }
  out.payload = {at, left};
  return Status::Ok;
}

}  // namespace shmbus::log
