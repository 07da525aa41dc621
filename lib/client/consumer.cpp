// Consumer: wait on the commit word of the next frame (layout.hpp, consumer column).
#include "shmbus/consumer.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "client/attach.hpp"
#include "log/cursor_join.hpp"
#include "log/frame_count.hpp"
#include "log/named_cursor.hpp"
#include "log/ring.hpp"
#include "log/segment_reader.hpp"
#include "log/spin.hpp"
#include "shm/asymmetric_fence.hpp"
#include "shm/file.hpp"
#include "shm/futex.hpp"
#include "shm/process.hpp"

namespace shmbus {

using log::atomic;
using log::FrameHeader;
using log::FrameType;
using log::SlotState;

struct Consumer::Impl {
  // The longest sleep when membarrier is unavailable here (sleep_until_commit).
  static constexpr std::chrono::milliseconds kUnfencedSleep{1};

  control::Supervision daemon;  // when attached through shmbusd; released last
  log::Ring ring;
  log::CursorSlot* slot = nullptr;
  ConsumerOptions options;
  // What poll's common case reads and moves (shmbus/detail/poll_in_place.hpp).
  // Impl is never copied or moved, so these can name its fields.
  detail::PollState state;
  std::uint64_t& slot_control = state.mine;
  std::uint64_t& position = state.position;    // next frame to read
  std::uint64_t& published = state.published;  // last value stored in slot->position
  // Positions >= safe_from are never overwritten under us (`block` join
  // protocol); below it, and always on `overwrite`, frames are copied and
  // validated against the tail.
  std::uint64_t& safe_from = state.safe_from;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  LostRange lost{};
  // An observer's (ConsumerOptions::gating = false) stand-ins for a slot's words.
  std::uint64_t observer_control = 0;
  std::uint64_t observer_position = 0;
  bool observer() const noexcept { return slot == nullptr; }
  std::vector<std::byte> scratch;  // scratch_buffer()

  // --- replay merge (durable topics): reading what the ring no longer holds ---
  // While `disk` is set, poll reads the segment files (the spiller's, found
  // through the partition's .seg link in the bus directory) from `position`,
  // and goes back to the ring once position reaches join_at, what the
  // spiller had written (the files hold all below it). Meanwhile an
  // anonymous consumer's cursor follows the spiller's written watermark (a
  // replaying consumer holds `block` producers back no more than the
  // spiller does); safe_from is past everything, so the inline poll leaves
  // it all to us. In the ring, a lap sends us back to the files, never past
  // what we did not read.
  std::optional<log::SegmentReader> disk;
  std::optional<log::SegmentReader::Batch> batch;  // the one being delivered
  std::uint64_t batch_at = 0;                      // next frame in it
  bool durable() const noexcept { return ring.durability().durable != 0; }
  std::string disk_dir() const {
    return ring_dir + "/" + topic_name + "." + std::to_string(options.partition) + ".seg";
  }
  std::string ring_dir, topic_name;

  ~Impl() { leave(); }

  bool named() const noexcept { return !options.name.empty(); }

  // Frees our slot, ACTIVE or EVICTED (an evicted slot stays taken until its
  // owner leaves it), or parks a named one (it stays, gating at its
  // position). Afterwards slot_control matches no slot's control again:
  // every new holder takes a new generation (wrapping only after 2^30), so
  // poll() says Evicted until a rejoin.
  void leave() noexcept {
    if (slot == nullptr) return;
    if (named()) return log::park(*slot, slot_control);
    for (SlotState from : {SlotState::Active, SlotState::Evicted}) {
      std::uint64_t c = log::with_state(slot_control, from);
      if (atomic(slot->control)
              .compare_exchange_strong(c, log::with_state(slot_control, SlotState::Free),
                                       std::memory_order_acq_rel))
        break;
    }
  }

  void hold(log::CursorSlot& s, std::uint64_t mine) noexcept {
    slot = &s;
    slot_control = mine;
    state.control_word = &s.control;
    state.position_word = &s.position;
  }

  // A taken-over named cursor resumes at its stored position, which is
  // checked like a seek; lapped (`overwrite`), the first poll says Lagged.
  Outcome resume(std::uint64_t t) {
    const std::uint64_t p = atomic(slot->position).load(std::memory_order_acquire);
    auto damaged = [&](const std::string& why) {
      return Error{EPROTO, "cursor '" + options.name + "' on " + ring.name() +
                               " is damaged: its position " + std::to_string(p) + " " + why +
                               " (delete the cursor to start it again)"};
    };
    if (p % ring.alignment() != 0)
      return damaged("is not a multiple of the frame alignment " +
                     std::to_string(ring.alignment()));
    if (p > t) return damaged("is past the tail " + std::to_string(t));
    position = published = p;
    if (p < ring.oldest_intact(t)) return Done{};
    if (auto ok = check_boundary(p, t); !ok && ok.error().code != ERANGE)
      return damaged("is not where a frame starts (" + ok.error().message + ")");
    return Done{};
  }
  // The eviction check (layout.hpp, "Slow consumer").
  bool evicted() const noexcept { return detail::evicted(state); }

  bool copying(std::uint64_t p) const noexcept {
    return ring.policy() == Policy::Overwrite || p < safe_from;
  }
  // True when producers may have overwritten the frame at p (they advance the
  // tail before writing, so a tail more than a ring ahead proves it).
  bool overrun(std::uint64_t p) const noexcept {
    return ring.tail().load(std::memory_order_acquire) > p + ring.capacity();
  }
  Status lagged_past(std::uint64_t p, std::uint64_t t) noexcept {
    const std::uint64_t rejoin = ring.oldest_intact(t);
    lost = {p, rejoin > p ? rejoin : p};
    position = lost.to;
    safe_from = observer() ? ~std::uint64_t{0} : ring.tail().load(std::memory_order_seq_cst);
    return Status::Lagged;
  }
  Status lagged(std::uint64_t p) noexcept {
    if (durable() && in_files(p)) {
      if (to_disk(p)) return Status::Empty;
      // Retention removed p's file: lost up to the oldest position on
      // disk (as the files are listed now), and on from there.
      std::uint64_t oldest = 0;
      if (auto files = log::SegmentReader::open(disk_dir())) oldest = files->start();
      if (oldest > p && in_files(oldest) && to_disk(oldest)) {
        lost = {p, oldest};
        return Status::Lagged;
      }
    }
    const std::uint64_t rejoin = ring.oldest_intact(ring.tail().load(std::memory_order_acquire));
    lost = {p, rejoin > p ? rejoin : p};
    position = lost.to;
    return Status::Lagged;
  }

  // Whether poll has something to do at p: a committed or a skipped frame.
  // Seq_cst: the sleeper's half of the Dekker pairing with publish.
  bool ready(std::uint64_t p) const noexcept {
    return ring.look<std::memory_order_seq_cst>(p).settled();
  }

  // A reader stuck at an unsettled frame waits kAbandonCheck before it asks
  // whether the claim there was abandoned (Ring::abandoned_until reads
  // /proc), and again each kAbandonCheck while it stays stuck there: a live
  // producer settles its frame in nanoseconds, unless it is descheduled.
  static constexpr std::chrono::milliseconds kAbandonCheck{1};
  std::uint64_t stuck_position = ~std::uint64_t{0};
  std::chrono::steady_clock::time_point stuck_since{};
  // Whether the reader has been stuck at p for kAbandonCheck. `counted`: the
  // caller polls (spins) here, so look at the clock on every
  // kStuckCheckEvery-th call only (the inline poll counts the same way).
  bool stuck_long_enough(std::uint64_t p, bool counted) noexcept {
    if (counted && state.idle_polls++ % detail::kStuckCheckEvery != 0) return false;
    const auto now = std::chrono::steady_clock::now();
    if (p != stuck_position) {
      stuck_position = p;
      stuck_since = now;
      return false;
    }
    if (now - stuck_since < kAbandonCheck) return false;
    stuck_since = now;
    return true;
  }

  // Goes past an abandoned claim at p (Ring::abandoned_until): Moved when
  // `position` went on; Lapped when a copying reader was lapped meanwhile
  // (it stays at p: the caller says Lagged); No when p is not abandoned.
  enum class Past : std::uint8_t { No, Moved, Lapped };
  Past past_abandoned(std::uint64_t p) noexcept {
    const std::optional<std::uint64_t> next = ring.abandoned_until(p);
    if (!next) return Past::No;
    if (copying(p)) {
      std::atomic_thread_fence(std::memory_order_acquire);  // the walk's loads before the tail
      if (overrun(p)) return Past::Lapped;
    }
    position = *next;
    return Past::Moved;
  }

  // The common case runs in shmbus/detail/poll_in_place.hpp (inlined into
  // Consumer::poll's callers; here for poll_wait), the rest here.
  PollResult poll(Handler handler, std::uint32_t max) {
    return detail::poll_in_place(state, handler, max, [&](const detail::PollProgress& at) {
      return poll_rest(handler, max, at);
    });
  }

  // poll() from where its common case stopped: any frame (not ready, skip,
  // pad, key or properties, copied, damaged). Read a header or a body in
  // place: check eviction after the batch, and if evicted, trust nothing
  // read in place since the last delivery (the length of a Pad or skipped
  // frame, a Corrupt verdict): producers may have overwritten it. `trusted`
  // is where the next frame surely starts.
  // Whether the files hold p (the spiller wrote past it and did not fail).
  bool in_files(std::uint64_t p) const noexcept {
    const log::SpillState& s = ring.spill();
    return atomic(const_cast<std::uint32_t&>(s.failed_errno)).load(std::memory_order_acquire) ==
               0 &&
           p < atomic(const_cast<std::uint64_t&>(s.written)).load(std::memory_order_acquire);
  }

  // Goes to the files for position p (a frame boundary); false when they
  // cannot serve it (no files, p below their start: then seek says why).
  bool to_disk(std::uint64_t p) noexcept {
    if (!disk) {
      auto opened = log::SegmentReader::open(disk_dir());
      if (!opened) {
        disk_error = opened.error();
        return false;
      }
      disk.emplace(std::move(*opened));
    }
    if (auto ok = disk->seek(p); !ok) {
      disk_error = ok.error();
      disk.reset();
      return false;
    }
    batch.reset();
    position = p;
    safe_from = ~std::uint64_t{0};
    join_at = 0;
    follow_spiller();
    return true;
  }
  Error disk_error;

  // While we read the files: the files hold everything below join_at (what
  // the spiller has written), and an anonymous consumer's cursor follows it.
  // A named cursor keeps its stored position (the next holder resumes
  // there: at least once, never past what was delivered).
  std::uint64_t join_at = 0;
  void follow_spiller() noexcept {
    // From shared memory: never past the tail, never off the alignment.
    const std::uint64_t tail = ring.tail().load(std::memory_order_acquire);
    std::uint64_t w = atomic(ring.spill().written).load(std::memory_order_acquire);
    w = std::min(w, tail) & ~(std::uint64_t{ring.alignment()} - 1);
    if (w > join_at) join_at = w;
    if (named()) {
      // The stored position is what the next holder resumes at: never past
      // what was delivered (it gates `block` producers there, as a named
      // cursor does).
      if (position != published) {
        atomic(*state.position_word).store(position, std::memory_order_seq_cst);
        published = position;
      }
    } else if (w > published) {
      atomic(*state.position_word).store(w, std::memory_order_seq_cst);
      published = w;
    }
  }

  PollResult poll_disk(Handler handler, std::uint32_t max, PollResult r) {
    while (r.count < max && r.status == Status::Empty) {
      if (!batch || batch_at >= batch->end) {
        follow_spiller();
        // Caught up: the ring from here. Our cursor moves to our position
        // first; frames below a tail read after it are copied and checked
        // against the tail (a lap sends us back), those past it are safe in
        // place (the join protocol). An observer copies everything.
        if (position >= join_at) {
          disk.reset();
          batch.reset();
          if (!observer()) {
            atomic(*state.position_word).store(position, std::memory_order_seq_cst);
            published = position;
          }
          safe_from = observer() ? ~std::uint64_t{0} : ring.tail().load(std::memory_order_seq_cst);
          return poll_ring(handler, max, {r, false, position});
        }
        auto next = disk->next(atomic(ring.spill().written).load(std::memory_order_acquire));
        if (!next) {
          // Retention removed the file we were to read next: what it held
          // is lost to us, as a lap loses it; on from the oldest file.
          const std::uint64_t from = position, oldest = disk->start();
          if (next.error().code == ERANGE && oldest > from && to_disk(oldest)) {
            lost = {from, oldest};
            r.status = Status::Lagged;
            break;
          }
          r.status = Status::Corrupt;
          disk_error = next.error();
          break;
        }
        if (!*next) {
          // Not in the files (yet). Gone from the ring too, and the files
          // will not get it (spilling failed, or it was lapped): lost.
          const std::uint64_t t = ring.tail().load(std::memory_order_acquire);
          if (!in_files(position) && position < ring.oldest_intact(t) &&
              ring.policy() == Policy::Overwrite) {
            disk.reset();
            r.status = lagged_past(position, t);
          }
          break;
        }
        batch = **next;
        batch_at = batch->position;
        if (batch->kind == log::BatchKind::Gap) {  // recorded as lost (an `overwrite` lap)
          lost = {batch->position, batch->end};
          position = batch->end;
          batch.reset();
          r.status = Status::Lagged;
          break;
        }
        continue;
      }
      const std::uint64_t p = batch_at;
      auto* f = const_cast<std::byte*>(batch->frames.data() + (p - batch->position));
      const log::SegmentHeader& g = disk->geometry();
      const detail::FrameLook l = detail::look_at_frame<std::memory_order_relaxed>(
          f, p, g.salt, g.ring_segment, g.alignment);
      batch_at = position = l.next;  // the batch checked: its frames walk
      if (!l.data()) continue;
      Message m;
      if (ring.decode(log::Ring::header_of(l), p, f + sizeof(FrameHeader), l.length, nullptr, m) !=
          Status::Ok) {
        position = p;
        r.status = Status::Corrupt;
        break;
      }
      handler(m);
      ++r.count;
    }
    if (r.count > 0 && r.status == Status::Empty) r.status = Status::Ok;
    return r;  // the cursor stays where follow_spiller put it
  }

  PollResult poll_rest(Handler handler, std::uint32_t max, const detail::PollProgress& at) {
    if (disk) return poll_disk(handler, max, at.result);
    return poll_ring(handler, max, at);
  }

  PollResult poll_ring(Handler handler, std::uint32_t max, const detail::PollProgress& at) {
    PollResult r = at.result;
    bool in_place = at.in_place;
    std::uint64_t trusted = at.trusted;
    while (r.count < max && r.status == Status::Empty) {
      const std::uint64_t p = position;
      const detail::FrameLook f = ring.look(p);
      const bool copy = copying(p);
      if (!f.settled()) {
        // Not ready here. Only a reader that can be lapped looks at the tail.
        if (copy && overrun(p)) {
          r.status = lagged(p);
          break;
        }
        if (!stuck_long_enough(p, true)) break;
        const Past past = past_abandoned(p);
        if (past == Past::No) break;
        in_place = in_place || !copy;  // read in place: trusted only if not evicted
        if (past == Past::Lapped) {
          r.status = lagged(p);
          break;
        }
        continue;
      }
      in_place = in_place || !copy;
      // Skipped (aborted, revoked), Pad, and control frames (for the readers
      // that know them, layout.hpp) are walked over.
      const auto type = static_cast<FrameType>(f.type);
      const bool walk_over =
          f.state == detail::FrameState::Skipped || type == FrameType::Pad || log::is_control(type);
      const auto* body = reinterpret_cast<const std::byte*>(ring.frame_at(p) + 1);
      if (copy) {
        if (!walk_over && !f.damaged()) std::memcpy(scratch_buffer(f.length), body, f.length);
        // Seqlock read side: the header's and the copy's loads before the tail load.
        std::atomic_thread_fence(std::memory_order_acquire);
        if (overrun(p)) {
          r.status = lagged(p);
          break;
        }
        body = scratch.data();
      }
      if (f.damaged()) {
        r.status = Status::Corrupt;
        break;
      }
      if (walk_over) {
        position = f.next;
        continue;
      }
      Message m;
      if (type != FrameType::Data ||
          ring.decode(log::Ring::header_of(f), p, body, f.length,
                      copy ? nullptr : scratch_buffer(f.length), m) != Status::Ok) {
        r.status = Status::Corrupt;
        break;
      }
      // In place: producers may overwrite the frame once we are evicted.
      if (!copy && evicted()) {
        r.status = Status::Evicted;
        break;
      }
      handler(m);
      position = trusted = f.next;
      ++r.count;
    }
    if (disk) {  // lapped on a durable topic: back to the files, from where we were
      if (r.count > 0 && r.status == Status::Empty) r.status = Status::Ok;
      return r;
    }
    return detail::finish_poll(state, {r, in_place, trusted});
  }

  Outcome rejoin() {
    if (observer())
      return Error{EINVAL, "rejoin on " + ring.name() + ": an observer is never evicted"};
    if (atomic(slot->control).load(std::memory_order_relaxed) == slot_control)
      return Error{EINVAL, "rejoin on " + ring.name() + ": this consumer was not evicted"};
    leave();
    disk.reset();
    batch.reset();
    const std::uint64_t t0 = ring.tail().load(std::memory_order_acquire);
    if (t0 % ring.alignment() != 0) return damaged_tail(t0);
    log::HeldSlot held;
    if (log::join_cursor(ring, t0, options.name, held) != log::Joined::Yes)
      return log::no_cursor_slot(ring);
    hold(*held.slot, held.control);
    const std::uint64_t t_join = ring.tail().load(std::memory_order_seq_cst);
    lost = {position, t0 > position ? t0 : position};
    position = published = t0;
    safe_from = t_join;
    return Done{};
  }
  Error damaged_tail(std::uint64_t t) const {
    // Frames are aligned, so the tail is: only damage does this.
    return Error{EPROTO, "topic partition " + ring.name() + " is damaged: its tail " +
                             std::to_string(t) + " is not a multiple of the frame alignment " +
                             std::to_string(ring.alignment())};
  }

  // Copied frame bodies, and the properties of in-place frames (copied so
  // that a writer cannot change their lengths under the reader): room for
  // `bytes` (at most a segment), grown on demand, by doubling, so a
  // consumer of a topic with 1 GiB segments holds what its largest frame
  // needed, not a whole segment.
  static constexpr std::size_t kInitialCopyBytes = 64 * 1024;
  std::byte* scratch_buffer(std::uint64_t bytes) {
    if (bytes > scratch.size())
      scratch.resize(std::max<std::uint64_t>(
          bytes, std::min<std::uint64_t>(2 * scratch.size(), ring.segment_bytes())));
    return scratch.data();
  }

  PollResult poll_wait(Handler handler, std::uint32_t max, std::chrono::nanoseconds timeout) {
    const auto now = std::chrono::steady_clock::now();
    const auto deadline = timeout >= std::chrono::steady_clock::time_point::max() - now
                              ? std::chrono::steady_clock::time_point::max()
                              : now + timeout;
    log::Backoff backoff(options.wait);
    for (;;) {
      PollResult r = poll(handler, max);
      if (r.status != Status::Empty || max == 0) return r;
      // A sleeper is woken by commits only, which a hole at our position
      // never gets: look at it here too.
      // Lapped meanwhile: poll() says Lagged. Evicted: poll() says so.
      if (!disk && stuck_long_enough(position, false) && past_abandoned(position) != Past::No)
        continue;
      if (!disk && options.wait == WaitStrategy::Futex && backoff.spun_out()) {
        sleep_until_commit(deadline);
      } else {
        backoff.pause();
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        r = poll(handler, max);
        return r.status == Status::Empty ? PollResult{Status::Timeout, 0} : r;
      }
    }
  }

  std::uint32_t asleep_mark() const noexcept {
    return log::asleep_mark(log::generation_of(slot_control));
  }

  // The futex half of WaitStrategy::Futex; see Ring::publish for the pairing.
  void sleep_until_commit(std::chrono::steady_clock::time_point deadline) noexcept {
    log::CursorHeader* h = ring.cursor_header();
    atomic(h->waiters).fetch_add(1, std::memory_order_seq_cst);
    // For a reaper, if we die asleep (layout.hpp, CursorSlot::asleep). An
    // observer that dies asleep leaves its count behind: extra wake-ups.
    if (!observer()) atomic(slot->asleep).store(asleep_mark(), std::memory_order_relaxed);
    // Producers publish with a light fence; without the heavy one we may
    // sleep through a commit whose producer did not see us, so sleep in
    // slices short enough to notice it (shm/asymmetric_fence.hpp).
    const bool fenced = shm::heavy_fence();
    const std::uint32_t seq = atomic(h->wake_seq).load(std::memory_order_seq_cst);
    auto left = deadline - std::chrono::steady_clock::now();
    if (!fenced) left = std::min<std::chrono::nanoseconds>(left, kUnfencedSleep);
    // Something is claimed at our position but not settled: perhaps by a
    // producer that died; wake to look (poll_wait) rather than sleep on.
    if (ring.tail().load(std::memory_order_relaxed) > position)
      left = std::min<std::chrono::nanoseconds>(left, kAbandonCheck);
    // Seq_cst loads after the seq_cst count: each pairs with a waker that
    // bumps wake_seq after the change looked for, a commit (Ring::publish)
    // or an eviction (Ring::evict).
    const bool still_ours =
        observer() || atomic(slot->control).load(std::memory_order_seq_cst) == slot_control;
    if (!ready(position) && !(copying(position) && overrun(position)) && still_ours &&
        left.count() > 0)
      shm::futex_wait(&h->wake_seq, seq, left);
    if (!observer()) atomic(slot->asleep).store(0, std::memory_order_relaxed);
    atomic(h->waiters).fetch_sub(1, std::memory_order_release);
  }

  // Whether q starts a frame: walk the frames from q's segment start (every
  // segment starts with one) to q, then check that producers did not
  // overwrite the walked bytes meanwhile (they advance the tail first).
  // The tail `t` read after publishing q is a boundary without a walk.
  Outcome check_boundary(std::uint64_t q, std::uint64_t t_seen) const {
    if (q == t_seen) return Done{};
    const std::uint64_t segment = q & ~(ring.segment_bytes() - 1);
    auto refuse = [&](int code, const std::string& why) {
      return Error{code, "seek to " + std::to_string(q) + " on " + ring.name() + ": " + why};
    };
    std::uint64_t x = segment, last = segment;  // last: where the frame ending at x starts
    while (x < q) {
      last = x;
      const detail::FrameLook f = ring.look(x);
      if (f.damaged()) return refuse(EPROTO, "the frame at " + std::to_string(x) + " is damaged");
      if (f.state != detail::FrameState::Open) {  // settled or handed out: its length is written
        x = f.next;
      } else if (const std::optional<std::uint64_t> next = ring.abandoned_until(x)) {
        x = *next;
      } else {
        // Unwritten, or a newer lap's frame: the tail tells.
        std::atomic_thread_fence(std::memory_order_acquire);
        const std::uint64_t t = ring.tail().load(std::memory_order_acquire);
        if (t > segment + ring.capacity())
          return refuse(ERANGE, "overwritten while it was checked; the ring now holds [" +
                                    std::to_string(ring.oldest_intact(t)) + ", " +
                                    std::to_string(t) + ")");
        return refuse(EAGAIN, "the frame at " + std::to_string(x) +
                                  " before it is still being written; try again");
      }
    }
    std::atomic_thread_fence(std::memory_order_acquire);  // the walk's loads before the tail
    const std::uint64_t t = ring.tail().load(std::memory_order_acquire);
    if (t > segment + ring.capacity())
      return refuse(ERANGE, "overwritten while it was checked; the ring now holds [" +
                                std::to_string(ring.oldest_intact(t)) + ", " + std::to_string(t) +
                                ")");
    if (x != q)
      return refuse(EINVAL, "not a frame boundary: the frame at " + std::to_string(last) +
                                " spans it (it ends at " + std::to_string(x) + ")");
    return Done{};
  }

  Outcome seek(std::uint64_t q) {
    if (q % ring.alignment() != 0)
      return Error{EINVAL, "seek to " + std::to_string(q) + " on " + ring.name() +
                               ": not a multiple of the frame alignment " +
                               std::to_string(ring.alignment())};
    auto outside = [&](std::uint64_t t) {
      return Error{ERANGE, "seek to " + std::to_string(q) + " on " + ring.name() +
                               ": outside the ring, which holds [" +
                               std::to_string(ring.oldest_intact(t)) + ", " + std::to_string(t) +
                               ")"};
    };
    if (evicted())
      return Error{EINVAL,
                   "seek on " + ring.name() + ": this consumer was evicted; rejoin() first"};
    // Never publish a cursor past the tail: a producer could cache a gate
    // above our real position.
    if (const std::uint64_t t = ring.tail().load(std::memory_order_acquire); q > t)
      return outside(t);
    // Publish first, then read the tail: the join protocol of layout.hpp.
    // (An observer publishes to nobody: it copies whatever it reads.)
    std::uint64_t& cursor = *state.position_word;
    atomic(cursor).store(q, std::memory_order_seq_cst);
    const std::uint64_t t = ring.tail().load(std::memory_order_seq_cst);
    if (q < ring.oldest_intact(t)) {
      atomic(cursor).store(published, std::memory_order_release);
      if (!durable()) return outside(t);
      if (!to_disk(q))
        return Error{disk_error.code, "seek to " + std::to_string(q) + " on " + ring.name() +
                                          ": older than the ring, and the files cannot serve it: " +
                                          disk_error.message};
      lost = {};
      return Done{};
    }
    if (disk) {  // leaving the files: in place again from this tail (an observer never)
      disk.reset();
      batch.reset();
      safe_from = observer() ? ~std::uint64_t{0} : t;
    }
    if (auto ok = check_boundary(q, t); !ok) {
      atomic(cursor).store(published, std::memory_order_release);
      // Overwritten while we looked: a durable topic has it in the files.
      if (ok.error().code == ERANGE && durable() && to_disk(q)) {
        lost = {};
        return Done{};
      }
      return ok.error();
    }
    position = published = q;
    if (t > safe_from && safe_from != ~std::uint64_t{0}) safe_from = t;
    return Done{};
  }
};

Result<Consumer> Consumer::open_partition(std::string_view bus, std::string_view topic,
                                          const ConsumerOptions& options) {
  auto attached = client::attach(bus, topic, options.partition, false, options.prefault);
  if (!attached) return attached.error();
  auto impl = std::make_unique<Impl>();
  impl->daemon = std::move(attached->daemon);
  impl->ring = std::move(attached->ring);
  impl->options = options;
  impl->ring_dir = shm::bus_directory(bus);
  impl->topic_name = std::string(topic);
  log::Ring& r = impl->ring;
  impl->scratch.assign(std::min<std::uint64_t>(r.segment_bytes(), Impl::kInitialCopyBytes),
                       std::byte{0});  // touched now: no page faults for common frames
  detail::PollState& s = impl->state;
  s.ring = r.geometry();
  s.block = r.policy() == Policy::Block && options.gating;

  const std::uint64_t t0 = r.tail().load(std::memory_order_acquire);
  if (t0 % r.alignment() != 0) return impl->damaged_tail(t0);
  std::uint64_t t_join = 0;
  bool resumed = false;
  if (impl->named()) {
    if (!options.gating)
      return Error{EINVAL, "cursor '" + options.name + "' on " + r.name() +
                               ": a named cursor holds a slot; an observer (gating = false) "
                               "has none"};
    if (auto ok = log::check_cursor_name(options.name); !ok) return ok.error();
    // Taken over, the slot kept gating all along; new, it joined as below.
    auto held = log::hold_named(r, options.name, t0);
    if (!held) return held.error();
    impl->hold(*held->held.slot, held->held.control);
    resumed = held->resumed;
    t_join = r.tail().load(std::memory_order_seq_cst);
    impl->safe_from = t_join;
  } else if (options.gating) {
    // Join: take a free slot, make it Active (seq_cst), then read the tail as T_join.
    log::HeldSlot held;
    if (log::join_cursor(r, t0, "", held) != log::Joined::Yes) return log::no_cursor_slot(r);
    impl->hold(*held.slot, held.control);
    t_join = r.tail().load(std::memory_order_seq_cst);
    impl->safe_from = t_join;
  } else {
    // An observer: its "slot" is process-local, so nobody gates on it or
    // evicts it, and every frame is below safe_from: copied and validated.
    s.control_word = &impl->observer_control;
    s.position_word = &impl->observer_position;
    impl->slot_control = impl->observer_control;
    t_join = t0;
    impl->safe_from = ~std::uint64_t{0};
  }
  impl->published = t0;
  if (resumed) {
    if (auto ok = impl->resume(t_join); !ok) return ok.error();
    return Consumer(std::move(impl));
  }
  switch (options.start) {
    case ConsumerOptions::Start::Latest:
      impl->position = t0;
      break;
    case ConsumerOptions::Start::Earliest:
      impl->position = r.oldest_intact(t_join);
      // A durable topic's earliest is the oldest message in its files.
      if (impl->durable()) {
        if (auto files = log::SegmentReader::open(impl->disk_dir())) {
          if (files->start() < impl->position && !impl->to_disk(files->start()))
            return impl->disk_error;
        }
      }
      break;
    case ConsumerOptions::Start::Position: {
      impl->position = t0;
      if (auto ok = impl->seek(options.position); !ok) return ok.error();
      break;
    }
    case ConsumerOptions::Start::Time: {
      impl->position = t0;
      std::optional<std::uint64_t> at;
      if (impl->durable()) {
        if (auto files = log::SegmentReader::open(impl->disk_dir())) {
          auto found = files->find_time(options.time_ns,
                                        atomic(r.spill().written).load(std::memory_order_acquire));
          if (!found) return found.error();
          at = *found;
        }
      }
      if (!at) at = log::find_stamp(r, r.oldest_intact(t_join), t0, options.time_ns);
      if (at) {
        if (auto ok = impl->seek(*at); !ok) {
          // Overwritten since it was found (`overwrite`): from the oldest
          // intact frame on, all stamped later than what was found.
          if (ok.error().code != ERANGE) return ok.error();
          impl->position = r.oldest_intact(r.tail().load(std::memory_order_acquire));
        }
      }
      break;
    }
  }
  if (!impl->disk) detail::publish_cursor(impl->state);
  return Consumer(std::move(impl));
}

Consumer::Consumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)), state_(&impl_->state) {}
// By hand: a moved-from Consumer must not keep reading through state_.
Consumer::Consumer(Consumer&& o) noexcept
    : impl_(std::move(o.impl_)), state_(std::exchange(o.state_, nullptr)) {}
Consumer& Consumer::operator=(Consumer&& o) noexcept {
  impl_ = std::move(o.impl_);
  state_ = std::exchange(o.state_, nullptr);
  return *this;
}
Consumer::~Consumer() = default;

PollResult Consumer::poll_rest(Handler handler, std::uint32_t max_messages,
                               const detail::PollProgress& at) {
  return impl_->poll_rest(handler, max_messages, at);
}
PollResult Consumer::poll_wait(Handler handler, std::uint32_t max_messages,
                               std::chrono::nanoseconds timeout) {
  return impl_->poll_wait(handler, max_messages, timeout);
}
Outcome Consumer::rejoin() {
  return impl_->rejoin();
}
Outcome Consumer::seek(std::uint64_t position) {
  return impl_->seek(position);
}
std::uint64_t Consumer::position() const noexcept {
  return impl_->position;
}
LostRange Consumer::lost() const noexcept {
  return impl_->lost;
}
std::uint32_t Consumer::partition() const noexcept {
  return impl_->options.partition;
}

}  // namespace shmbus
