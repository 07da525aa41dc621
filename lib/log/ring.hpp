// lib/log/ring.hpp — a process-local view of one partition (its ring file and
// its cursor file), with the pieces of the protocol in layout.hpp that both
// producers and consumers use.
//
// The geometry (segment size, capacity, alignment, salt, slot counts) is read
// from shared memory once, validated, and kept in this object: nothing on the
// hot path re-reads a size from shared memory.
//
// Concurrency: a Ring is immutable after open() apart from the shared words it
// points to; every method is safe from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "log/layout.hpp"
#include "shm/asymmetric_fence.hpp"
#include "shm/file.hpp"
#include "shmbus/message.hpp"
#include "shmbus/options.hpp"
#include "shmbus/status.hpp"

namespace shmbus::log {

template <class T>
inline std::atomic_ref<T> atomic(T& word) noexcept {
  return std::atomic_ref<T>(word);
}

// Bus-directory file names of a partition.
std::string ring_path(const std::string& dir, std::string_view topic, std::uint32_t partition);
std::string cursor_path(const std::string& dir, std::string_view topic, std::uint32_t partition);

// Whether the holder named in a slot's control word `c` (and its stamp) is
// alive; a parked named cursor's (kNoHolder) never is. A holder that has not
// stamped the slot yet is judged by its pid alone (layout.hpp, SlotState).
bool holder_alive(std::uint64_t c, std::uint64_t& stamp);

class Ring {
 public:
  // Creates both files of one partition.
  static Outcome create(const std::string& dir, std::string_view topic, std::uint32_t partition,
                        const TopicOptions& options);
  // Maps one partition. The log is read-only unless `writable_log` (producers).
  static Result<Ring> open(const std::string& dir, std::string_view topic, std::uint32_t partition,
                           bool writable_log, bool prefault);
  // Maps one partition for an observer (describe, stat): the log and the
  // cursor slots both read-only, so that it needs only read permission and
  // can write nothing. Only the const readers of the Ring may be used on it.
  static Result<Ring> open_observer(const std::string& dir, std::string_view topic,
                                    std::uint32_t partition);
  // The same from descriptors the daemon handed over (not closed here).
  static Result<Ring> open_fds(int ring_fd, int cursor_fd, std::string_view topic,
                               std::uint32_t partition, bool writable_log, bool prefault);

  // --- geometry (process-local copies) ---
  std::uint64_t capacity() const noexcept { return capacity_; }
  std::uint64_t segment_bytes() const noexcept { return segment_bytes_; }
  std::uint32_t alignment() const noexcept { return alignment_; }
  std::uint32_t max_producers() const noexcept { return max_producers_; }
  std::uint32_t max_consumers() const noexcept { return max_consumers_; }
  std::uint32_t partitions() const noexcept { return partitions_; }
  Policy policy() const noexcept { return policy_; }
  bool exclusive() const noexcept { return exclusive_; }
  std::uint64_t max_body() const noexcept { return segment_bytes_ - sizeof(FrameHeader); }

  std::uint64_t frame_bytes(std::uint64_t body) const noexcept {
    return detail::frame_bytes(body, alignment_);
  }
  std::uint64_t segment_left(std::uint64_t p) const noexcept {
    return detail::segment_left(p, segment_bytes_);
  }
  std::uint64_t salt() const noexcept { return salt_; }
  std::uint64_t commit_word(std::uint64_t p) const noexcept { return p ^ salt_; }
  std::uint64_t skip_word(std::uint64_t p) const noexcept { return (p ^ kSkipBit) ^ salt_; }
  std::uint64_t pending_word(std::uint64_t p) const noexcept { return (p ^ kPendingBit) ^ salt_; }
  // Whether `word`, read from the commit word at p (each caller picks its
  // load order), says the frame there is settled: committed or skipped. Its
  // header is then final, and its length may be walked over.
  bool settled(std::uint64_t word, std::uint64_t p) const noexcept {
    return word == commit_word(p) || word == skip_word(p);
  }
  detail::FrameGeometry geometry() const noexcept {
    return {data_, capacity_ - 1, salt_, segment_bytes_, alignment_};
  }
  // The frame at p, an aligned position, as every walk sees it (frame.hpp).
  template <std::memory_order order = std::memory_order_acquire>
  detail::FrameLook look(std::uint64_t p) const noexcept {
    return detail::look_at<order>(geometry(), p);
  }
  FrameHeader* frame_at(std::uint64_t p) const noexcept {
    return reinterpret_cast<FrameHeader*>(data_ + (p & (capacity_ - 1)));
  }
  // The oldest segment start that producers are not overwriting when the tail is `tail`.
  std::uint64_t oldest_intact(std::uint64_t tail) const noexcept {
    if (tail <= capacity_) return 0;
    return ((tail - capacity_) & ~(segment_bytes_ - 1)) + segment_bytes_;
  }

  // --- shared words ---
  std::atomic_ref<std::uint64_t> tail() const noexcept { return atomic(ring_header()->tail); }
  RingHeader* ring_header() const noexcept { return reinterpret_cast<RingHeader*>(log_.data()); }
  CursorHeader* cursor_header() const noexcept {
    return reinterpret_cast<CursorHeader*>(cursors_.data());
  }
  ProducerSlot& producer_slot(std::uint32_t i) const noexcept {
    return reinterpret_cast<ProducerSlot*>(log_.data() + sizeof(RingHeader))[i];
  }
  CursorSlot& cursor_slot(std::uint32_t i) const noexcept {
    return reinterpret_cast<CursorSlot*>(cursors_.data() + sizeof(CursorHeader))[i];
  }
  const std::string& name() const noexcept { return name_; }
  // Read from shared memory on each call: for tools and the daemon, not the hot path.
  SupervisionConfig supervision() const noexcept { return ring_header()->supervision; }
  DurabilityConfig durability() const noexcept { return ring_header()->durability; }
  RetentionConfig retention() const noexcept { return ring_header()->retention; }
  SpillState& spill() const noexcept { return ring_header()->spill; }

  // --- protocol steps shared by producers and consumers ---

  // Producer step 4 and 5: publish the frame at p, then wake sleeping consumers.
  void publish(FrameHeader* frame, std::uint64_t p) const noexcept {
    // SYNC POINT: consumer's acquire load of commit. Dekker with Consumer
    // sleep_until_commit: we store commit then load waiters; a sleeper
    // increments waiters then loads commit. The fences keep either side from
    // missing the other (a sleeper never misses its wake-up); ours is the
    // light one, the sleeper's the heavy one (shm/asymmetric_fence.hpp).
    if (detail::commit_then_check_sleepers(frame->commit, commit_word(p), shm::light_fences,
                                           cursor_header()->waiters))
      wake();
  }
  void wake() const noexcept;
  // After a seq_cst CAS on a word that a consumer falling asleep checks
  // after counting itself (a commit word, its cursor slot's control word):
  // a seq_cst load of the count, and a wake-up if anyone is counted. The
  // waker's half of the Dekker pairing with Consumer sleep_until_commit.
  void wake_sleepers() const noexcept {
    if (atomic(cursor_header()->waiters).load(std::memory_order_seq_cst) != 0) wake();
  }

  // Producer step 3, last store: the frame at p (header, key, properties
  // written) is handed out; from now on it may be revoked.
  void hand_out(FrameHeader* frame, std::uint64_t p) const noexcept {
    atomic(frame->commit)
        .store(pending_word(p), std::memory_order_release);  // SYNC POINT: revoke()'s CAS
  }
  // Producer steps 4 and 5 for a handed-out frame: CAS its commit word from
  // pending to `word` (ready, or skip for an abort), then wake sleeping
  // consumers. False when a supervisor revoked the frame first: nothing was
  // written then. The seq_cst CAS and the seq_cst load of waiters are the
  // producer's half of the Dekker pairing with Consumer sleep_until_commit.
  bool settle(FrameHeader* frame, std::uint64_t p, std::uint64_t word) const noexcept {
    // Only from pending(p): whatever else is there (skip: revoked) is not ours.
    std::uint64_t pending = pending_word(p);
    if (!atomic(frame->commit)
             .compare_exchange_strong(
                 pending, word, std::memory_order_seq_cst,
                 std::memory_order_relaxed))  // SYNC POINT: consumer's acquire load of commit
      return false;
    wake_sleepers();
    return true;
  }
  // Supervisor: turns the pending frame at p into a skipped one (pending ->
  // skip by CAS; layout.hpp, "Hung producer"). False when p holds no pending
  // frame (committed, aborted, revoked, or never handed out).
  bool revoke(std::uint64_t p) const noexcept;
  // The handed-out (pending) frame of the claim [p, p + bytes): at p, or at
  // the next segment start when the claim begins with padding; nullopt when
  // neither is pending (not handed out yet, committed, aborted or revoked).
  std::optional<std::uint64_t> pending_frame(std::uint64_t p, std::uint64_t bytes) const noexcept;
  // Supervisor: revokes the pending frame of the claim [p, p + bytes).
  bool revoke_claim(std::uint64_t p, std::uint64_t bytes) const noexcept;
  // Supervisor: evicts the cursor slot `s` whose control word was `active`
  // (ACTIVE -> EVICTED by CAS). False when it changed meanwhile.
  bool evict(CursorSlot& s, std::uint64_t active) const noexcept;

  // Writes and publishes a PAD frame over [p, p + bytes), which lies in one segment.
  void write_pad(std::uint64_t p, std::uint64_t bytes) const noexcept;

  // The gate of back-pressure: a claim may not end more than a ring past it.
  // It is the minimum of `tail_seen`, the positions of ACTIVE cursors (when
  // `cursors`, i.e. `block`), and the open claims of producers other than
  // `self` (a producer must never lap another's unfinished write: that
  // writer's late stores would land in newer frames). Issues the seq_cst
  // fence of the join protocol first.
  std::uint64_t gate(std::uint64_t tail_seen, const ProducerSlot* self,
                     bool cursors) const noexcept;
  // A reader stuck at p, a frame boundary whose commit word is not settled,
  // asks whether the claim there is abandoned (layout.hpp, "Abandoned
  // claims"): the position to go on from, past what no live process will
  // ever settle, or nullopt when a live producer (or a reaper) may still
  // settle p, or nothing was claimed there yet. Reads only; reads /proc for
  // the holders of the producer slots it must judge, so callers ask it
  // rarely (after a reader has been stuck a while).
  std::optional<std::uint64_t> abandoned_until(std::uint64_t p) const noexcept;
  // Frees cursor slots below `below` whose owner process is dead, except
  // named ACTIVE ones (they belong to their name). Returns how many.
  std::uint32_t reap_dead_consumers(std::uint64_t below) const noexcept;
  // Pads over the open claims of dead producers and frees their slots.
  std::uint32_t reap_dead_producers() const noexcept;

  // A private copy of the header that `l` looked at, for decode.
  static FrameHeader header_of(const detail::FrameLook& l) noexcept {
    return {0, l.length, static_cast<FrameType>(l.type), l.flags, l.timestamp};
  }
  // Checks a frame's header and body and fills `out`. `header` is a private
  // copy; `body` points at `body_room` readable bytes (the rest of the
  // segment in place, or a private copy). Properties are copied into
  // `props_copy` when non-null, so that a writer cannot change them under
  // the reader. Returns Ok or Corrupt.
  // The common frame (no key, no properties) is decoded inline: it is on
  // every consumer's hot path.
  Status decode(const FrameHeader& header, std::uint64_t p, const std::byte* body,
                std::uint64_t body_room, std::byte* props_copy, Message& out) const noexcept {
    if ((header.flags & kMustUnderstandFlags) != 0 || header.length > body_room)
      return decode_headers(header, p, body, body_room, props_copy, out);
    out.position = p;
    out.timestamp_ns = header.timestamp;
    out.key = {};
    out.properties = PropertyView{};
    out.payload = {body, header.length};
    return Status::Ok;
  }

 private:
  Status decode_headers(const FrameHeader& header, std::uint64_t p, const std::byte* body,
                        std::uint64_t body_room, std::byte* props_copy,
                        Message& out) const noexcept;
  static Result<Ring> adopt(shm::Mapping log, shm::Mapping cursors, const std::string& rpath,
                            const std::string& cpath, std::string_view topic,
                            std::uint32_t partition);
  shm::Mapping log_;
  shm::Mapping cursors_;
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t segment_bytes_ = 0;
  std::uint64_t salt_ = 0;
  std::uint32_t alignment_ = 0;
  std::uint32_t max_producers_ = 0;
  std::uint32_t max_consumers_ = 0;
  std::uint32_t partitions_ = 0;
  Policy policy_ = Policy::Block;
  bool exclusive_ = false;
  std::string name_;  // "<topic>.<partition>", for messages
};

}  // namespace shmbus::log
