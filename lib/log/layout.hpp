// lib/log/layout.hpp — the bytes of a partition in shared memory, and the
// protocol that producers and consumers follow on them. Every other file in
// lib/log implements what this header fixes.
//
// A partition is two files in the bus directory:
//
//   <topic>.<p>.log   the ring: mapped read-write by producers, read-only by consumers
//   <topic>.<p>.cur   the cursor slots: read-write for both (consumers publish
//                     their positions; producers read them for back-pressure)
//
// Ring file                                  Cursor file
//   0    FileHeader (64)                       0    FileHeader (64)
//   64   RingConfig (64), written at creation  64   CursorConfig (64)
//   128  SupervisionConfig (8), DurabilityConfig (8), RetentionConfig (16)
//   192  SpillState (64): the spiller's watermarks
//   256  tail        u64  (own 128-byte pair)  128  waiters u32, wake_seq u32 (futex)
//   384  ProducerSlot x max_producers (128 B)  256  CursorSlot x max_consumers (128 B)
//   data_offset (4096-aligned): segment_count x segment_bytes of frames
//
// Positions are logical byte offsets that only grow; position p lives at ring
// offset p & (capacity - 1). Frames are aligned to frame_alignment (>= 32)
// and never cross a segment end, so every segment starts with a frame.
//
// Frame (layout version 4; its constants are public: shmbus/detail/frame.hpp):
//   0   commit     u64  p ^ salt; stored LAST, with release order
//   8   length     u32  body bytes after this header (before padding)
//   12  type       u16  below
//   14  flags      u16  below
//   16  timestamp  i64  CLOCK_REALTIME ns at publish (0: the producer opted out)
//   24  body: [u16 key_len, key] [u32 props_len, props] payload
//
// Types come in ranges, so that later features add frames without breaking
// readers that predate them:
//   1 Data, 2 Pad; 3..0x7fff: none yet, a reader that meets one says Corrupt;
//   0x8000..0xffff control frames (transaction and group markers, gap
//   records): every reader steps over one by its length, and only the
//   readers that know its type act on it; none is delivered by poll().
// Flags: the low byte must be understood (HasKey, HasProperties; a reader
// that meets a bit it does not know says Corrupt, never misreads the body);
// the high byte is advisory (readers that do not know a bit ignore it).
// A producer sets a must-understand bit beyond these only on a ring whose
// RingConfig::features names the feature; Ring::open refuses a ring with a
// feature bit it does not know, with an error naming it, so a reader never
// meets such a frame. Layout 4 defines no feature bit.
//
// Properties (HasProperties) are typed, name -> String | Int64 | Double |
// Bool | Bytes; their encoding is in shmbus/message.hpp (PropertyView reads
// it, lib/log/properties.hpp writes and checks it).
//
// Timestamps are on unless a producer opts out (ProducerOptions::timestamps):
// the time stamp counter extrapolated from a CLOCK_REALTIME anchor taken
// every few ms (shmbus/detail/clock.hpp), so a stamp costs no clock_gettime
// on the hot path. Stamps follow CLOCK_REALTIME to well under a microsecond;
// like it, they may step back (at an anchor, or when the clock is set).
//
// The commit word is the position XOR a per-ring odd random salt. A zeroed
// ring never looks committed (p is even, the salt odd), an old lap's frame
// carries another position, and stale payload bytes match only by a 2^-64
// accident; so segments need no zeroing before reuse.
//
// A frame handed out by claim() goes through three commit-word values; each
// is the salted position with one low bit flipped, and since positions are
// multiples of 32 none of them equals the ready word of any frame:
//
//   pending(p) = (p ^ 4) ^ salt   claimed, header written, payload being written
//   ready(p)   =  p      ^ salt   committed: deliver (Data) or skip (Pad)
//   skip(p)    = (p ^ 2) ^ salt   aborted, or revoked by a supervisor: skip it
//                                 by its `length`, never read its body
//
// pending -> ready and pending -> skip are compare-and-swaps, so exactly one
// of the owner's commit/abort and a supervisor's revocation wins (below).
//
// Every reader walks frames with one step, detail::look_at
// (shmbus/detail/frame.hpp; Ring::look): the commit word says Open, Pending,
// Committed or Skipped; only when it is not Open is the header read, each
// field once, and the frame's end (`next`) is given only when its length
// keeps it inside its segment (otherwise it is damaged). The inline poll,
// the consumer's library path, seeks, the reapers, shmbusd and stat all use
// it, and tests/fuzz/ring_fuzz.cpp fuzzes it with the walks built on it.
//
// Who writes which word, in which order:
//
//   producer                                   consumer at position p
//   --------                                   ----------------------
//   0 announce claim_floor (seq_cst)           1 c = commit(p).load(acquire)
//   1 claim: p = tail.fetch_add(n)
//     (exclusive: local p; tail.store(p+n))       c == p^salt: frame ready (one line)
//     release fence: tail before any byte         else "not ready here": only now read
//   2 block: wait until p+n-capacity <=              tail to tell "unwritten" from "lapped"
//     min(active cursors) (cached)             2 read length/type/flags/body
//   3 write length, type, flags, ts, key,      3 overwrite or p < safe_from: copy out,
//     properties; commit(p).store(pending,       acquire fence, reload tail; tail >
//     release); hand the payload span out        p + capacity means the copy may be torn
//   4 commit(p).CAS(pending -> ready, seq_cst)  4 in place (block): after decoding, and
//     SYNC POINT with consumer step 1              after the batch, reload the own slot's
//     (a failed CAS: revoked, Status::Revoked)     control: changed = evicted (below)
//   5 if waiters (seq_cst load): wake          5 cursor.store(p_next, release) per batch
//     (offer, pads: a relaxed load after a       SYNC POINT with producer step 2
//     light fence, paired with a sleeper's     a sleeper: waiters += 1, heavy fence,
//     heavy one: shm/asymmetric_fence.hpp)       reload commit(p), then futex wait
//
// Pads that a producer writes itself (segment ends) and that a reaper writes
// over a dead producer's unwritten claim are stored ready at once (Ring::write_pad).
//
// offer() (the whole message in one call) hands nothing out: it writes the
// payload, then the header, then stores ready(p) with release, as a Pad is
// stored. Its frame is never pending, so never revocable (a supervisor sees
// "inside claim(), nothing to revoke" for the nanoseconds it takes), and the
// stores to the frame's first line, which consumers spin on, come last and
// together, after the payload copy's loads: a consumer that polls the line
// in between does not pull it away from the producer twice.
//
// No producer laps another's open claim (either policy): a producer
// descheduled between its fetch_add and its writes would otherwise store into
// newer frames that readers have already validated. So a producer announces a
// lower bound of its claim (ProducerSlot::claim_floor, seq_cst) before the
// fetch_add, and the gate below includes the floors of other producers.
//
// Back-pressure (`block`): a producer may write [p, p+n) only when
// p + n - capacity <= G, G the minimum position of ACTIVE cursors. G is cached
// per producer and recomputed (after a seq_cst fence) only when a claim would
// pass it; with no active cursor, G = the claim's end (nobody to wait for).
// A consumer joins by storing its cursor, making it ACTIVE (seq_cst), then
// reading tail as T_join. A producer's cached G was computed from a tail value
// <= T_join, or its recomputation saw the new cursor; either way, positions >=
// T_join can never be overwritten under the consumer, which reads them in
// place (zero-copy). Positions below T_join it reads copy-and-validate.
//
// Supervision (shmbusd, daemon/supervise.hpp): a hung producer and a slow consumer.
//
// Hung producer. A claim whose frame stays pending for the topic's
// hung_producer_timeout is revoked: the daemon CASes the commit word from
// pending(p) to skip(p) (Ring::revoke) and writes nothing else. Who writes
// which word, in which order:
//   producer: header, key, properties -> commit = pending (release) ->
//             [payload, by the user, at any time] -> CAS pending -> ready
//             (or -> skip for abort) -> end_claim: claim_bytes = 0, claim_floor = 0
//   daemon:   CAS pending -> skip (seq_cst; acquires the header through the
//             producer's release of pending, releases it to consumers)
//   consumer: skip(p) -> read `length` -> move on by frame_bytes(length)
// Why the late producer cannot damage anything:
//   - the CAS decides: a producer whose CAS fails never publishes; it returns
//     Revoked, and nothing it wrote is delivered, so a retry duplicates nothing;
//     a daemon whose CAS fails (the producer won) changes nothing;
//   - after pending it writes no header word: `length`, which consumers use to
//     skip, is stable; abort no longer rewrites `type`, it CASes to skip;
//   - its late payload stores land in the body of a skipped frame, which no
//     consumer reads;
//   - that body is not reused while the producer may still write to it:
//     the daemon leaves the producer's claim_floor in place, and no producer
//     laps a floor (Ring::gate), so [p, p + n) is claimed again only after
//     the producer's commit/abort has ended its claim, or it died and a
//     reaper cleared its slot. The cost: a producer that stays hung still
//     stops the other producers one ring after its claim; consumers do not
//     stall. Zero-copy makes this unavoidable: the hung process holds a
//     writable mapping of those bytes. The daemon logs its pid; kill it.
//   - the pending value is unique to this claim (a later lap's words carry
//     later positions; payload bytes match by a 2^-64 accident), so the
//     daemon's CAS cannot hit a reused frame, however late it runs (no ABA).
// The hole before pending: between claim_floor and pending (the fetch_add,
// the exact record, boundary pads, the header) there is no frame to revoke,
// and the daemon cannot tell a producer stopped there from one waiting for
// room. It revokes nothing there and logs the producer's pid once; other
// producers stop a ring past its floor until it continues or dies (then
// the reapers pad its exact record; a death before the exact record leaves
// a hole that only the lower bound announces: readers go past it, below).
// Library code runs there for nanoseconds, so only SIGSTOP or a debugger
// hits it.
//
// Abandoned claims (Ring::abandoned_until). A producer may die anywhere: after
// its fetch_add but before its exact record (no reaper knows the claim), or
// waiting for room with a claim a ring ahead (no reaper may pad it yet). So
// readers do not wait for a reaper: a reader stuck at p, a frame boundary
// whose commit word is not settled, with tail > p, proves the claim there
// abandoned and goes past it, reading only (consumers map the log read-only):
//   1 T = tail.load(seq_cst) > p: the claim covering p was made by a
//     fetch_add that T's load follows; its maker Q announced claim_floor
//     <= its position (seq_cst) before that fetch_add;
//   2 fence(seq_cst), then each slot's floor (seq_cst) and holder: we see
//     Q's floor (<= p), or a later one: 0 or a floor of a later claim, both
//     stored after Q settled everything it claimed (release);
//   3 a live holder (reapers are holders too) with floor <= p: wait; a dead
//     holder's floor is ignored; live floors > p bound what follows (a live
//     claim starts at or above its floor; one announced after step 2 starts
//     at or above T, by 1 and the fetch_add's coherence);
//   4 reload commit(p): settled now means Q finished (step 2's release): read
//     it. Else nobody alive will write p: pending(p) (a dead producer's
//     handed-out frame, length final) is skipped by its length; anything else
//     is skipped up to the first position q < min(bound, segment end) whose
//     commit word names q (ready, skip or pending: a frame of this lap), else
//     to that minimum, a frame boundary (segment ends, floors and tails are).
// Exclusive rings have no floors: only slot 0 claims, and everything before
// its last claim is settled, so a dead or absent holder is the proof.
// The reader waits 1 ms at p before it asks (a live producer settles in
// nanoseconds unless descheduled, and the proof reads /proc), every 1 ms
// after. A `block` reader's cursor <= p keeps [p, ..) from being reused while
// it looks; a copying reader validates against the tail afterwards, as for
// any read. What a reaper pads or revokes later in that range is consistent
// with the skip (pads and skipped frames carry nothing), and frames tile the
// positions, so every reader arrives at the same boundary.
//
// Slow consumer (`block`). An ACTIVE cursor whose position stays the same for
// the topic's slow_consumer_timeout while it holds producers back (less than
// a segment, the largest frame, of room before it: a claim may get Full) is
// evicted: the daemon CASes its control from ACTIVE(gen) to EVICTED(gen)
// (Ring::evict). Producers' gate reads only ACTIVE cursors, so they move on
// and may overwrite what the consumer reads in place. An EVICTED slot is
// never reused until its owner leaves it (rejoin, destructor) or dies (the
// reapers), so the consumer's late cursor stores hit nobody. The consumer
// learns of it on the hot path with one load of its own slot's control (a
// line it owns, written by nobody else unless evicted), after an acquire
// fence, i.e. the read side of a seqlock whose "sequence" is the control:
//   producer: gate reads control (acquire) ... release fence ... frame bytes
//   consumer: frame bytes ... acquire fence ... control; unchanged = intact
// poll() checks at its start, before each in-place delivery and after the
// last one: a batch that ends Evicted delivered intact messages except
// perhaps the last (its handler may have read bytes overwritten meanwhile).
//
// Durable named cursors (ConsumerOptions::name; the spiller's, a group's).
// A cursor slot may carry a name (CursorSlot::name, written while Joining).
// A named slot belongs to the name, not to a process: it stays ACTIVE, and
// so keeps gating `block` producers at its position, when its holder closes
// (the holder moves it to ACTIVE with pid 0, "parked") or dies (reapers
// leave named ACTIVE slots alone but take back an `asleep` count), and is
// freed only by deleting the name (Topic::delete_cursor). shmbusd does not
// evict a named cursor as slow; it logs it. Who writes what:
//   take over (name found ACTIVE, holder dead or 0): CAS control from the
//     seen word to ACTIVE(gen+1, me) (seq_cst); stamp; the slot never stops
//     gating, and one CAS decides between two openers;
//   create (name not found): Free -> Joining (take_slot), write name and
//     position, seq_cst fence, then look at every other slot: one that is
//     Joining or ACTIVE under the same name with a live holder (or parked)
//     makes us yield (back to Free, retry after a random pause: a parked or
//     finished one is then taken over, a live one refused); else Joining ->
//     ACTIVE (seq_cst). Two creators each write the name before the fence
//     and look after it, so at least one sees the other (Dekker) and yields:
//     never two slots of one name.
//   delete: take_slot (Joining, naming the deleter), zero the name, Free; a
//     live holder is refused.
// The stored position is read like anything in shared memory: it must be a
// frame boundary not past the tail (checked as a seek); below the ring's
// oldest frame (an `overwrite` topic lapped it) the first poll says Lagged.
// Positions are published after each poll batch, so a holder that dies
// mid-batch has that batch delivered again to the next one: at least once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "shm/file.hpp"
#include "shm/process.hpp"
#include "shmbus/detail/frame.hpp"

namespace shmbus::log {

using shm::kFalseSharingRange;

enum class FrameType : std::uint16_t { Data = 1, Pad = 2 };
inline constexpr std::uint16_t kFirstControlType = 0x8000;
inline constexpr bool is_control(FrameType t) {
  return static_cast<std::uint16_t>(t) >= kFirstControlType;
}
enum FrameFlags : std::uint16_t { kHasKey = 1, kHasProperties = 2 };
inline constexpr std::uint16_t kMustUnderstandFlags = detail::kFrameMustUnderstandFlags;
inline constexpr std::uint16_t kKnownMustUnderstandFlags = kHasKey | kHasProperties;
// RingConfig::features: the must-understand features this library knows.
inline constexpr std::uint32_t kKnownFeatures = 0;

struct FrameHeader {
  std::uint64_t commit;
  std::uint32_t length;
  FrameType type;
  std::uint16_t flags;
  std::int64_t timestamp;
};
static_assert(sizeof(FrameHeader) == 24);
static_assert(offsetof(FrameHeader, length) == 8);
static_assert(offsetof(FrameHeader, type) == 12);
static_assert(offsetof(FrameHeader, flags) == 14);
static_assert(offsetof(FrameHeader, timestamp) == 16);
// Consumer::poll's common case is compiled into applications (shmbus/detail/poll_in_place.hpp).
static_assert(sizeof(FrameHeader) == detail::kFrameHeaderBytes);
static_assert(detail::kCacheLineBytes == shm::kCacheLine);
static_assert(offsetof(FrameHeader, length) == detail::kFrameLengthAt);
static_assert(offsetof(FrameHeader, type) == detail::kFrameTypeAt);
static_assert(offsetof(FrameHeader, flags) == detail::kFrameFlagsAt);
static_assert(offsetof(FrameHeader, timestamp) == detail::kFrameTimestampAt);
static_assert(static_cast<std::uint16_t>(FrameType::Data) == detail::kFrameTypeData);
inline constexpr std::uint32_t kMinFrameAlignment = 32;  // a PAD header always fits
static_assert(kMinFrameAlignment >= sizeof(FrameHeader));
// The low position bits flipped in the skip and pending commit words.
inline constexpr std::uint64_t kSkipBit = detail::kSkipBit;
inline constexpr std::uint64_t kPendingBit = detail::kPendingBit;
static_assert(kMinFrameAlignment > kPendingBit && kMinFrameAlignment > kSkipBit);

struct RingConfig {
  std::uint64_t segment_bytes;
  std::uint64_t capacity;  // segment_bytes * segment_count
  std::uint64_t salt;      // odd
  std::uint64_t data_offset;
  std::uint32_t segment_count;
  std::uint32_t frame_alignment;
  std::uint32_t max_producers;
  std::uint32_t partition;
  std::uint32_t partitions;
  std::uint8_t policy;     // shmbus::Policy
  std::uint8_t exclusive;  // 1: one producer, no read-modify-write on tail
  std::uint8_t reserved[2];
  std::uint32_t features;  // must-understand features its frames may use (above)
  std::uint8_t reserved_end[4];
};
static_assert(offsetof(RingConfig, features) == 56);
static_assert(sizeof(RingConfig) == 64);

// Slot states. A slot's control word is state | holder's pid << 2 |
// generation << 34: one compare-and-swap takes a slot, names its holder and
// starts a new generation, so a reaper never judges a new holder by the
// previous one's pid (a holder stores nothing before it), and a CAS from an
// old value fails after any change of holder (30-bit generations, wrapping).
// The holder's start time, which tells a reused pid, follows in the slot's
// `stamp`, tagged with the generation it was stored for (make_stamp); until
// then the holder is judged by its pid alone (holder_of). The price: a holder
// killed between its CAS and its stamp, whose pid is reused at once, passes
// for alive until the process with that pid exits.
// Joining: taken, being filled in (or being reaped); invisible to gating.
// Evicted: a cursor slot that shmbusd took from a slow consumer; invisible to
// gating, not free until its owner leaves it or dies.
enum class SlotState : std::uint8_t { Free = 0, Joining = 1, Active = 2, Evicted = 3 };
inline constexpr std::uint64_t kGenerationMask = (std::uint64_t{1} << 30) - 1;
inline constexpr SlotState state_of(std::uint64_t control) {
  return static_cast<SlotState>(control & 3);
}
inline constexpr std::uint32_t pid_of(std::uint64_t control) {
  return static_cast<std::uint32_t>(control >> 2);
}
inline constexpr std::uint64_t generation_of(std::uint64_t control) {
  return control >> 34;
}
inline constexpr std::uint64_t make_control(SlotState s, std::uint64_t generation,
                                            std::uint32_t pid) {
  return (generation & kGenerationMask) << 34 | std::uint64_t{pid} << 2 |
         static_cast<std::uint64_t>(s);
}
// The same holder and generation in another state.
inline constexpr std::uint64_t with_state(std::uint64_t control, SlotState s) {
  return (control & ~std::uint64_t{3}) | static_cast<std::uint64_t>(s);
}
// A stamp: the holder's start time above the low 24 bits of the generation
// it was stored for (start times, in clock ticks since boot, fit in 40 bits).
inline constexpr std::uint64_t kStampTagMask = (std::uint64_t{1} << 24) - 1;
inline constexpr std::uint64_t make_stamp(std::uint64_t start_time, std::uint64_t generation) {
  return start_time << 24 | (generation & kStampTagMask);
}
// The holder a slot names; start_time 0 while the holder has not stamped
// the slot yet (its stamp is still the previous holder's).
inline shm::ProcessId holder_of(std::uint64_t control, std::uint64_t stamp) {
  const bool stamped = (stamp & kStampTagMask) == (generation_of(control) & kStampTagMask);
  return {pid_of(control), stamped ? stamp >> 24 : 0};
}
// A slot's control word and the holder it names, read from outside the
// holder: control with acquire (pairs with the holder's CAS to Active, after
// which its stamp is visible), then the stamp.
struct SlotHolder {
  std::uint64_t control;
  shm::ProcessId holder;
};
inline SlotHolder read_holder(std::uint64_t& control, std::uint64_t& stamp) {
  const std::uint64_t c = std::atomic_ref<std::uint64_t>(control).load(std::memory_order_acquire);
  return {c, holder_of(c, std::atomic_ref<std::uint64_t>(stamp).load(std::memory_order_relaxed))};
}
// Takes a slot whose control word was `seen` (a joiner: Free; a reaper: a
// dead holder's; the next holder of a named cursor: its parked word): one
// CAS (seq_cst) to `to` (Joining; Active for a named cursor taken over, which
// never stops gating) in the next generation, naming `me`, then the stamp
// with our start time for that generation. Returns the new control word, or
// nothing when the slot changed since `seen`.
inline std::optional<std::uint64_t> take_slot(std::uint64_t& control, std::uint64_t& stamp,
                                              std::uint64_t seen, const shm::ProcessId& me,
                                              SlotState to = SlotState::Joining) {
  const std::uint64_t gen = generation_of(seen) + 1;
  const std::uint64_t taken = make_control(to, gen, me.pid);
  if (!std::atomic_ref<std::uint64_t>(control).compare_exchange_strong(seen, taken,
                                                                       std::memory_order_seq_cst))
    return std::nullopt;
  std::atomic_ref<std::uint64_t>(stamp).store(make_stamp(me.start_time, gen),
                                              std::memory_order_relaxed);
  return taken;
}

// A producer's registration and its open claim.
//
// Two records of the claim, for two readers:
//   claim_floor   (other producers' Ring::gate) a LOWER BOUND of the open
//                 claim's position, announced (seq_cst) before the fetch_add
//                 that makes the claim, stored as position | 1 so that 0 (a
//                 zeroed slot) means "no open claim";
//   claim_position, claim_bytes   (a reaper, after the owner died) the exact
//                 claim, stored after the fetch_add; claim_bytes 0 = none.
// A producer that dies between its fetch_add and the exact record leaves a
// hole no reaper knows of; readers go past it ("Abandoned claims" above).
//
// An exclusive ring (one producer, no fetch_add) needs less: only its owner
// moves the tail, and it stores claim_position before the tail (release;
// reapers load the tail with acquire, then claim_position), so its last
// claim is always [claim_position, tail): open until the frame at
// claim_position is committed (the reaper's walk skips committed frames, and
// the supervisor looks at that frame's commit word). Its common-case offer
// (shmbus/detail/offer_exclusive.hpp) stores only claim_position; its other offers and
// claim() keep the full record, whose claim_bytes the supervisor watches for
// hung hand-outs. claim_position is set to the tail while the slot is Joining.
struct alignas(kFalseSharingRange) ProducerSlot {
  std::uint64_t control;  // Free -> Joining -> Active by CAS; back to Free by CAS
  std::uint64_t reserved0;
  std::uint64_t stamp;           // holder: make_stamp, right after taking the slot
  std::uint64_t claim_position;  // producer: relaxed, then claim_bytes (exclusive: tail) release
  std::uint64_t claim_bytes;     // reaper: acquire (exclusive: tail), then claim_position
  std::uint64_t claim_floor;     // producer: seq_cst; other producers: seq_cst
};
static_assert(sizeof(ProducerSlot) == 128);
static_assert(offsetof(ProducerSlot, claim_position) == 24);
static_assert(offsetof(ProducerSlot, claim_bytes) == 32);
static_assert(offsetof(ProducerSlot, claim_floor) == 40);
inline constexpr std::uint64_t kNoClaimFloor = 0;

// The topic's supervision timeouts (TopicOptions), in ms, 0 = never; written
// at creation, read by shmbusd and `shmbus topic describe`.
struct SupervisionConfig {
  std::uint32_t hung_producer_timeout_ms;
  std::uint32_t slow_consumer_timeout_ms;
};

// The topic's durability (TopicOptions), written at creation; zero in files
// made before it: not durable.
struct DurabilityConfig {
  std::uint8_t durable;  // 1: shmbusd's spiller records the partition
  std::uint8_t fsync;    // shmbus::Fsync
  std::uint16_t reserved;
  std::uint32_t fsync_interval_ms;
};

// A durable topic's retention (TopicOptions), written at creation; zero: no
// limit (and in files made before it).
struct RetentionConfig {
  std::uint64_t bytes;
  std::uint64_t ms;
};

// The spiller's watermarks (daemon/spill.hpp), written only by shmbusd
// (release stores, each only growing while it runs), read by producers
// (Producer::wait_durable, acquire) and tools. Every position is a frame
// boundary, and durable <= written <= committed <= tail:
//   committed  the spiller found every frame below it settled (copied out)
//   written    every write below it completed (in the page cache or on disk)
//   durable    ... and an fdatasync that started after those writes completed
//   disk_start the oldest position in the segment files
// failed_errno: 0, or the errno that stopped spilling (EIO, ENOSPC): durable
// then stays where it was until shmbusd restarts (an fsync error is never
// retried and trusted).
struct SpillState {
  std::uint64_t committed;
  std::uint64_t written;
  std::uint64_t durable;
  std::uint64_t disk_start;
  std::uint32_t failed_errno;
  std::uint32_t reserved;
  std::uint64_t reserved1[3];
};
static_assert(sizeof(SpillState) == 64);

struct alignas(kFalseSharingRange) RingHeader {
  shm::FileHeader file;           // 0
  RingConfig config;              // 64
  SupervisionConfig supervision;  // 128 (zero in files made before it: never)
  DurabilityConfig durability;    // 136
  RetentionConfig retention;      // 144
  std::uint8_t pad0[32];
  SpillState spill;  // 192: the spiller's line, beside the configs (never the tail's)
  alignas(kFalseSharingRange) std::uint64_t tail;  // 256: next position to claim
  std::uint8_t pad1[120];
  // 384: ProducerSlot[max_producers]
};
static_assert(offsetof(RingHeader, config) == 64);
static_assert(offsetof(RingHeader, supervision) == 128);
static_assert(offsetof(RingHeader, durability) == 136);
static_assert(offsetof(RingHeader, retention) == 144);
static_assert(offsetof(RingHeader, spill) == 192);
static_assert(offsetof(RingHeader, tail) == 256);
static_assert(sizeof(RingHeader) == 384);

struct CursorConfig {
  std::uint32_t max_consumers;
  std::uint32_t partition;
  std::uint8_t reserved[56];
};
static_assert(sizeof(CursorConfig) == 64);

// `asleep` says that the owner counts itself in CursorHeader::waiters: the
// owner stores its generation (30 bits) after incrementing waiters and 0
// before decrementing it. A reaper of a dead owner takes the count back with
// a CAS from the dead owner's generation to 0, so that a consumer killed
// asleep in poll_wait does not leave every producer calling futex_wake per
// message forever; the generation keeps it from taking a later owner's count.
// An owner that dies between the two steps leaves a count behind (extra
// wake-ups, never a missed one).
// `name`: a durable named cursor's name ("Durable named cursors" above),
// NUL-padded, at most kMaxCursorName bytes; all zero: anonymous. Words, so
// that readers load what a joiner may be writing with relaxed atomics.
inline constexpr std::size_t kCursorNameWords = 8;
inline constexpr std::size_t kMaxCursorName = kCursorNameWords * 8 - 1;
struct alignas(kFalseSharingRange) CursorSlot {
  std::uint64_t position;  // consumer: store release per batch; Ring::gate: load acquire
  std::uint64_t control;   // state | pid | generation; CAS (owner, reapers, shmbusd's eviction)
  std::uint32_t reserved0;
  std::uint32_t asleep;  // owner: store; reapers: CAS (above)
  std::uint64_t stamp;   // holder: make_stamp, right after taking the slot
  std::uint64_t reserved1[4];
  std::uint64_t name[kCursorNameWords];  // joiner and deleter, while Joining: relaxed stores
};
static_assert(sizeof(CursorSlot) == 128);
static_assert(offsetof(CursorSlot, asleep) == 20);
static_assert(offsetof(CursorSlot, name) == 64);
// The pid of a parked named slot's holder: nobody.
inline constexpr std::uint32_t kNoHolder = 0;
// The `asleep` value of an owner of `generation`: never 0.
inline constexpr std::uint32_t asleep_mark(std::uint64_t generation) {
  return static_cast<std::uint32_t>(generation) | 0x80000000u;
}

struct alignas(kFalseSharingRange) CursorHeader {
  shm::FileHeader file;                               // 0
  CursorConfig config;                                // 64
  alignas(kFalseSharingRange) std::uint32_t waiters;  // 128: consumers asleep on wake_seq
  std::uint32_t wake_seq;                             // 132: bumped by a producer that wakes
  std::uint8_t pad[120];
  // 256: CursorSlot[max_consumers]
};
static_assert(offsetof(CursorHeader, waiters) == 128);
static_assert(offsetof(CursorHeader, wake_seq) == 132);
static_assert(sizeof(CursorHeader) == 256);

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);

inline constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) {
  return (v + a - 1) & ~(a - 1);
}

}  // namespace shmbus::log
