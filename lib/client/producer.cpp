// Producer: claim, write, commit (layout.hpp, producer column).
#include "shmbus/producer.hpp"
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <utility>

#include "client/attach.hpp"
#include "log/properties.hpp"
#include "log/ring.hpp"
#include "log/spin.hpp"
#include "shm/asymmetric_fence.hpp"
#include "shm/clock.hpp"
#include "shm/file.hpp"
#include "shm/process.hpp"

namespace shmbus {

using log::atomic;
using log::FrameHeader;
using log::FrameType;
using log::SlotState;

struct Producer::Impl {
  control::Supervision daemon;  // when attached through shmbusd; released last
  log::Ring ring;
  log::ProducerSlot* slot = nullptr;
  std::uint64_t slot_control = 0;
  ProducerOptions options;
  // What offer's common case reads and moves (shmbus/detail/offer_exclusive.hpp).
  // Impl is never copied or moved, so these can name its fields.
  detail::OfferState state;
  bool& block = state.block;  // a `block` topic
  // `block`: a claim whose end is <= gating_limit may go without looking at
  // the cursors (gating_limit = cached minimum cursor + capacity).
  std::uint64_t& gating_limit = state.gating_limit;
  std::uint64_t& local_tail = state.local_tail;  // exclusive producers only
  std::uint64_t claimed_end = 0;  // shared producers: the end of our last claim
  std::uint64_t& open_claim = state.open_claim;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  std::chrono::steady_clock::time_point next_reap{};

  static constexpr std::uint64_t kNoClaim = detail::kNoClaim;
  // How long Producer::open waits for slots that are passing between owners.
  static constexpr std::chrono::milliseconds kJoinWait{1000};

  // Joined: we own a slot. Held: every slot we may take has an owner.
  // Passing: none was free, or one we tried was taken from under us, and
  // some slot is Joining (changing owners): worth another try soon.
  enum class Join { Joined, Held, Passing };

  // Takes a free slot: Free -> Joining (invisible to reapers' padding and to
  // gating), fill in who we are, then Joining -> Active. An exclusive topic
  // has one slot in use: slot 0.
  Join join() noexcept {
    const shm::ProcessId me = shm::self();
    Join result = Join::Held;
    const std::uint32_t slots = ring.exclusive() ? 1 : ring.max_producers();
    for (std::uint32_t i = 0; i < slots; ++i) {
      log::ProducerSlot& s = ring.producer_slot(i);
      const std::uint64_t c = atomic(s.control).load(std::memory_order_acquire);
      if (log::state_of(c) != SlotState::Free) {
        if (log::state_of(c) == SlotState::Joining) result = Join::Passing;
        continue;
      }
      const std::optional<std::uint64_t> taken = log::take_slot(s.control, s.stamp, c, me);
      if (!taken) {
        result = Join::Passing;
        continue;
      }
      std::uint64_t joining = *taken;
      atomic(s.claim_bytes).store(0, std::memory_order_relaxed);
      atomic(s.claim_floor).store(log::kNoClaimFloor, std::memory_order_relaxed);
      // An exclusive ring's reaper pads [claim_position, tail): no claim yet.
      // (Only the slot's owner moves an exclusive ring's tail.)
      atomic(s.claim_position)
          .store(ring.tail().load(std::memory_order_acquire), std::memory_order_relaxed);
      const std::uint64_t mine = log::with_state(joining, SlotState::Active);
      // Reapers take only a dead holder's slot: this fails only on damage.
      if (!atomic(s.control).compare_exchange_strong(joining, mine, std::memory_order_acq_rel)) {
        result = Join::Passing;
        continue;
      }
      slot = &s;
      slot_control = mine;
      return Join::Joined;
    }
    return result;
  }

  ~Impl() {
    if (slot == nullptr) return;
    if (open_claim != kNoClaim) {
      Claim c{{}, open_claim};
      (void)finish(c, false);
    }
    std::uint64_t c = slot_control;
    atomic(slot->control)
        .compare_exchange_strong(c, log::with_state(c, SlotState::Free), std::memory_order_acq_rel);
  }

  // Recomputes the cached gating limit; true when [.., end) may be written.
  bool has_room(std::uint64_t end, std::uint64_t tail_seen) noexcept {
    gating_limit = ring.gate(tail_seen, slot, block) + ring.capacity();
    if (end <= gating_limit) return true;
    // Blocked: a dead consumer or producer must not hold us forever. Checking
    // liveness reads /proc, so do it at most once a millisecond.
    auto now = std::chrono::steady_clock::now();
    if (now >= next_reap) {
      next_reap = now + std::chrono::milliseconds(1);
      std::uint32_t freed = ring.reap_dead_producers();
      if (block) freed += ring.reap_dead_consumers(end - ring.capacity());
      if (freed > 0) {
        gating_limit = ring.gate(tail_seen, slot, block) + ring.capacity();
        return end <= gating_limit;
      }
    }
    return false;
  }

  // Multi-producer: the claim [.., end) is ours already; wait for room.
  void wait_for_room(std::uint64_t end) noexcept {
    log::Backoff backoff(options.wait);
    while (!has_room(end, end)) backoff.pause();
    // The gate's loads before our frame's bytes: the eviction check of
    // in-place readers relies on it (layout.hpp, "Slow consumer").
    std::atomic_thread_fence(std::memory_order_release);
  }

  // Claims `n` bytes (a multiple of the alignment) that do not cross a
  // segment end. Returns the position, or Full, or Corrupt when the shared
  // tail is not aligned (only damage does that; nothing is written then).
  Status acquire(std::uint64_t n, std::uint64_t& position) noexcept {
    auto tail = ring.tail();
    std::uint64_t k = n;  // bytes to claim (multi-producer): the frame, maybe after padding
    for (;;) {
      if (ring.exclusive()) {
        const std::uint64_t p = local_tail;
        const std::uint64_t left = ring.segment_left(p);
        const std::uint64_t take = n <= left ? n : left;  // pad to the segment end first
        if (block && p + take > gating_limit && !has_room(p + take, p)) {
          end_claim();  // a segment-end pad claimed in the loop before is committed
          return Status::Full;
        }
        claim_exclusive(p, take);
        if (take != n) {
          ring.write_pad(p, take);
          continue;
        }
        position = p;
        return Status::Ok;
      }
      const std::uint64_t t = tail.load(std::memory_order_relaxed);
      // A pre-check, so that Full costs nothing irrevocable. Another producer
      // may still claim in between; then wait_for_room waits for the consumers
      // (producer.hpp: as long as they take).
      if (block && t + k > gating_limit && !has_room(t + k, t)) return Status::Full;
      // Announce a lower bound of the claim before making it, so that no
      // producer can lap it unseen (layout.hpp, Ring::gate).
      atomic(slot->claim_floor).store(t | 1, std::memory_order_seq_cst);
      const std::uint64_t p = tail.fetch_add(k, std::memory_order_seq_cst);
      // The tail before any byte we write (overwrite readers check it after copying).
      std::atomic_thread_fence(std::memory_order_release);
      if (p % ring.alignment() != 0) {
        atomic(slot->claim_floor).store(log::kNoClaimFloor, std::memory_order_release);
        return Status::Corrupt;
      }
      record_claim(p, k);
      atomic(slot->claim_floor).store(p | 1, std::memory_order_relaxed);  // raises the bound
      if (p + k > gating_limit) wait_for_room(p + k);
      // The frame goes at p, or at the next segment start if it does not fit
      // before it; what is left of [p, p + k) becomes padding.
      const std::uint64_t x = ring.segment_left(p) >= n ? p : p + ring.segment_left(p);
      if (x + n <= p + k) {
        pad_range(x + n, p + k);
        pad_range(p, x);
        position = x;
        return Status::Ok;
      }
      // Crossed a segment end: pad it all and claim again where we ended: the
      // frame alone if it fits before the next segment end, else the rest of
      // the segment plus the frame (right unless another producer gets there first).
      pad_range(p, p + k);
      end_claim();
      const std::uint64_t left_after = ring.segment_left(p + k);
      k = left_after >= n ? n : left_after + n;
    }
  }

  // An exclusive producer's claim of [p, p + n), room checked.
  void claim_exclusive(std::uint64_t p, std::uint64_t n) noexcept {
    record_claim(p, n);  // before the tail moves: a reaper must know of it
    detail::advance_tail(state, p + n);
  }

  // Pads [a, b), splitting at segment ends.
  void pad_range(std::uint64_t a, std::uint64_t b) noexcept {
    while (a < b) {
      const std::uint64_t len = std::min(b - a, ring.segment_left(a));
      ring.write_pad(a, len);
      a += len;
    }
  }

  // The exact claim, for a reaper if we die (layout.hpp, ProducerSlot).
  void record_claim(std::uint64_t p, std::uint64_t n) noexcept {
    claimed_end = p + n;
    atomic(slot->claim_position).store(p, std::memory_order_relaxed);
    atomic(slot->claim_bytes).store(n, std::memory_order_release);
  }
  // Release: our frame's bytes before a producer that sees "no claim" laps them.
  void end_claim() noexcept {
    atomic(slot->claim_bytes).store(0, std::memory_order_release);
    atomic(slot->claim_floor).store(log::kNoClaimFloor, std::memory_order_release);
  }

  // A frame's body: [u16 key_len, key] [u32 props_len, props] payload.
  struct Body {
    std::uint64_t bytes = 0;  // all of it (the frame's length field)
    std::uint64_t props_bytes = 0;
    std::uint16_t flags = 0;
  };
  static Status plan(std::uint64_t max_body, std::size_t payload, std::string_view key,
                     std::span<const Property> props, Body& b) noexcept {
    if (payload > max_body) return Status::TooLarge;  // before any sum can wrap
    b.bytes = payload;
    if (!key.empty()) {
      if (key.size() > 0xffff) return Status::TooLarge;
      b.bytes += 2 + key.size();
      b.flags |= log::kHasKey;
    }
    if (!props.empty()) {
      const std::optional<std::uint64_t> n = log::encoded_size(props);
      if (!n) return Status::TooLarge;
      b.props_bytes = *n;
      b.bytes += 4 + b.props_bytes;
      b.flags |= log::kHasProperties;
    }
    return b.bytes > max_body ? Status::TooLarge : Status::Ok;
  }

  // Writes the header, key and properties of the frame f (not its commit
  // word); returns where the payload goes.
  std::byte* write_header(FrameHeader* f, const Body& b, std::string_view key,
                          std::span<const Property> props) noexcept {
    f->length = static_cast<std::uint32_t>(b.bytes);
    f->type = FrameType::Data;
    f->flags = b.flags;
    auto* at = reinterpret_cast<std::byte*>(f + 1);
    if (!key.empty()) {
      auto n = static_cast<std::uint16_t>(key.size());
      std::memcpy(at, &n, 2);
      std::memcpy(at + 2, key.data(), n);
      at += 2 + n;
    }
    if (!props.empty()) {
      auto n = static_cast<std::uint32_t>(b.props_bytes);
      std::memcpy(at, &n, 4);
      log::encode(props, at + 4);
      at += 4 + n;
    }
    // Last (detail/clock.hpp: the counter read stalls the stores after it).
    f->timestamp = options.timestamps ? stamp() : 0;
    return at;
  }

  // The time for a frame's header: extrapolated from the counter, or a new anchor.
  std::int64_t stamp() noexcept {
    std::int64_t ns;
    return detail::extrapolate(state.clock, detail::read_tsc(), ns) ? ns
                                                                    : shm::clock_now(state.clock);
  }

  Status claim(std::size_t payload, std::string_view key, std::span<const Property> props,
               Claim& out) noexcept {
    if (open_claim != kNoClaim) return Status::Invalid;
    Body b;
    if (Status s = plan(ring.max_body(), payload, key, props, b); s != Status::Ok) return s;
    std::uint64_t p = 0;
    if (Status s = acquire(ring.frame_bytes(b.bytes), p); s != Status::Ok) return s;
    FrameHeader* f = ring.frame_at(p);
    std::byte* at = write_header(f, b, key, props);
    ring.hand_out(f, p);  // the header's last store: revocable from here (layout.hpp)
    out.payload = {at, payload};
    out.position = p;
    open_claim = p;
    return Status::Ok;
  }

  // A whole message in one call: payload first, then the header, then the
  // commit word, so that the stores to the frame's first line (the one
  // consumers spin on) come last and together, after the copy's loads; and
  // no pending word: the frame is never handed out, so never revocable, and
  // commits with a plain release store (layout.hpp, "offer").
  Status offer(std::span<const std::byte> payload, std::string_view key,
               std::span<const Property> props) noexcept {
    if (open_claim != kNoClaim) return Status::Invalid;
    Body b;
    if (Status s = plan(ring.max_body(), payload.size(), key, props, b); s != Status::Ok) return s;
    const std::uint64_t n = ring.frame_bytes(b.bytes);
    std::uint64_t p = 0;
    if (Status s = acquire(n, p); s != Status::Ok) return s;
    write_and_publish(p, b, payload, key, props);
    end_claim();
    detail::pretouch_next_frame(state, n);
    return Status::Ok;
  }

  // offer()'s writes into its claimed frame at p: payload, header, commit word.
  void write_and_publish(std::uint64_t p, const Body& b, std::span<const std::byte> payload,
                         std::string_view key, std::span<const Property> props) noexcept {
    FrameHeader* f = ring.frame_at(p);
    if (!payload.empty())
      std::memcpy(reinterpret_cast<std::byte*>(f + 1) + (b.bytes - payload.size()), payload.data(),
                  payload.size());
    (void)write_header(f, b, key, props);
    ring.publish(f, p);
  }

  Status finish(Claim& c, bool keep) noexcept {
    if (open_claim == kNoClaim || c.position != open_claim) return Status::Invalid;
    // Abort skips the frame by its length; no header word is written after hand_out.
    const bool settled =
        ring.settle(ring.frame_at(c.position), c.position,
                    keep ? ring.commit_word(c.position) : ring.skip_word(c.position));
    // A revoked claim is ended too: the supervisor wrote its skip word and
    // nothing else, so nobody writes into [position, ..) once our floor goes.
    end_claim();
    open_claim = kNoClaim;
    // An exclusive producer's frame ends at its tail (pretouch is only theirs).
    if (settled && keep) detail::pretouch_next_frame(state, local_tail - c.position);
    c = Claim{};
    return settled ? Status::Ok : Status::Revoked;
  }
};

Result<Producer> Producer::open_partition(std::string_view bus, std::string_view topic,
                                          const ProducerOptions& options) {
  auto attached = client::attach(bus, topic, options.partition, true, options.prefault);
  if (!attached) return attached.error();
  if (options.pretouch_next_frame && !attached->ring.exclusive())
    return Error{EINVAL, "topic partition " + attached->ring.name() +
                             " is not exclusive_producer: pretouch_next_frame needs to know "
                             "where the next frame goes, which a shared ring tells only at "
                             "its claim"};
  if (options.light_fence) shm::enable_light_fences();  // before our first publish
  auto impl = std::make_unique<Impl>();
  impl->daemon = std::move(attached->daemon);
  impl->ring = std::move(attached->ring);
  impl->options = options;
  impl->block = impl->ring.policy() == Policy::Block;
  log::Ring& r = impl->ring;
  r.reap_dead_producers();  // pads what crashed producers left open

  // A slot that is Joining is passing between owners: a joiner filling it
  // in, or a reaper padding after a dead owner (or either of them dead, which
  // the next reap sees). That lasts microseconds, so it is waited for, up to
  // kJoinWait, rather than reported as taken: an exclusive producer restarted
  // right after a crash would otherwise fail while somebody reaps its
  // predecessor.
  const auto give_up = std::chrono::steady_clock::now() + Impl::kJoinWait;
  Impl::Join joined;
  while ((joined = impl->join()) == Impl::Join::Passing &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    r.reap_dead_producers();
  }
  if (joined != Impl::Join::Joined) {
    if (!r.exclusive())
      return Error{EBUSY, "topic partition " + r.name() + " has all " +
                              std::to_string(r.max_producers()) + " producer slots taken" +
                              (joined == Impl::Join::Passing
                                   ? " (some were still passing between owners after " +
                                         std::to_string(Impl::kJoinWait.count()) + " ms)"
                                   : " (raise max_producers)")};
    const std::string pid = std::to_string(log::pid_of(atomic(r.producer_slot(0).control).load()));
    if (joined == Impl::Join::Held)
      return Error{EBUSY, "topic partition " + r.name() + " is exclusive and producer pid " + pid +
                              " holds it"};
    return Error{EBUSY, "topic partition " + r.name() +
                            " is exclusive and its producer slot was still passing between "
                            "owners after " +
                            std::to_string(Impl::kJoinWait.count()) + " ms (last named pid " + pid +
                            ")"};
  }
  detail::OfferState& s = impl->state;
  s.frames = reinterpret_cast<std::byte*>(r.frame_at(0));
  s.mask = r.capacity() - 1;
  s.salt = r.salt();
  s.segment_bytes = r.segment_bytes();
  s.alignment = r.alignment();
  s.max_body = r.max_body();
  s.tail = &r.ring_header()->tail;
  s.claim_position = &impl->slot->claim_position;
  s.waiters = &r.cursor_header()->waiters;
  s.light_fences = &shm::light_fences;
  s.exclusive = r.exclusive();
  s.timestamps = options.timestamps;
  if (options.timestamps) (void)shm::clock_now(s.clock);  // calibrates the counter once per process
  s.pretouch = options.pretouch_next_frame;
  impl->local_tail = r.tail().load(std::memory_order_acquire);
  if (impl->local_tail % r.alignment() != 0)
    return Error{EPROTO, "topic partition " + r.name() + " is damaged: its tail " +
                             std::to_string(impl->local_tail) +
                             " is not a multiple of the frame alignment"};
  return Producer(std::move(impl));
}

Producer::Producer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)), state_(&impl_->state) {}
// By hand: a moved-from Producer must not keep publishing through state_.
Producer::Producer(Producer&& o) noexcept
    : impl_(std::move(o.impl_)), state_(std::exchange(o.state_, nullptr)) {}
Producer& Producer::operator=(Producer&& o) noexcept {
  impl_ = std::move(o.impl_);
  state_ = std::exchange(o.state_, nullptr);
  return *this;
}
Producer::~Producer() = default;

Status Producer::wait_durable(std::chrono::nanoseconds timeout) noexcept {
  const Impl& i = *impl_;
  return wait_durable(i.ring.exclusive() ? i.local_tail : i.claimed_end, timeout);
}

Status Producer::wait_durable(std::uint64_t end, std::chrono::nanoseconds timeout) noexcept {
  const log::Ring& r = impl_->ring;
  if (r.durability().durable == 0) return Status::Invalid;
  log::SpillState& s = r.spill();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Spin briefly (fsync = never moves it within microseconds), then sleep
  // in slices that grow to 1 ms: fdatasync itself takes milliseconds.
  std::chrono::microseconds nap{10};
  for (int spins = 0;; ++spins) {
    if (atomic(s.durable).load(std::memory_order_acquire) >= end) return Status::Ok;
    if (atomic(s.failed_errno).load(std::memory_order_acquire) != 0) return Status::SpillFailed;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return Status::Timeout;
    if (spins < 100) {
      log::cpu_relax();
      continue;
    }
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(nap, deadline - now));
    nap = std::min<std::chrono::microseconds>(nap * 2, std::chrono::milliseconds(1));
  }
}

Status Producer::offer_rest(std::span<const std::byte> payload) noexcept {
  return impl_->offer(payload, {}, {});
}
void Producer::wake_consumers() noexcept {
  impl_->ring.wake();
}
std::int64_t Producer::new_anchor() noexcept {
  return shm::clock_now(state_->clock);
}

Status Producer::offer(std::span<const std::byte> payload, std::string_view key,
                       std::span<const Property> properties) noexcept {
  return impl_->offer(payload, key, properties);
}

Status Producer::claim(std::size_t payload_bytes, Claim& out) noexcept {
  return impl_->claim(payload_bytes, {}, {}, out);
}
Status Producer::claim(std::size_t payload_bytes, std::string_view key,
                       std::span<const Property> properties, Claim& out) noexcept {
  return impl_->claim(payload_bytes, key, properties, out);
}
Status Producer::commit(Claim& claim) noexcept {
  return impl_->finish(claim, true);
}
Status Producer::abort(Claim& claim) noexcept {
  return impl_->finish(claim, false);
}

std::size_t Producer::max_payload() const noexcept {
  return impl_->ring.max_body();
}
std::uint32_t Producer::partition() const noexcept {
  return impl_->options.partition;
}

}  // namespace shmbus
