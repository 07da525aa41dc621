// shmbus/options.hpp — what a topic, a producer and a consumer can be asked to be.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace shmbus {

// What a producer does when the ring is full of unread data.
enum class Policy : std::uint8_t {
  Block = 1,      // never overwrite a frame a registered consumer has not read
  Overwrite = 2,  // never wait; a lapped consumer gets Status::Lagged
};

// When the spiller of a durable topic calls fdatasync on what it wrote.
enum class Fsync : std::uint8_t {
  Never = 1,     // never: the page cache writes back; a process crash loses nothing,
                 // a machine crash loses what was not yet written back
  Interval = 2,  // every fsync_interval_ms (Kafka's log.flush.interval.ms)
  Always = 3,    // after every write (each batch of frames)
};

// How a consumer (or a producer on a full `block` ring) waits.
enum class WaitStrategy : std::uint8_t {
  BusySpin,   // lowest latency, burns a core
  SpinYield,  // spin a little, then sched_yield(): for shared cores
  Futex,      // spin a little, then sleep in the kernel until a producer wakes us
};

// Where a partition's memory lives (hwloc).
struct Placement {
  enum class Kind : std::uint8_t { Anywhere, Node, CallerNode };
  Kind kind = Kind::Anywhere;
  int node = -1;  // with Kind::Node
};

struct TopicOptions {
  std::uint32_t partitions = 1;
  std::uint64_t segment_bytes = 1u << 20;  // power of two, >= 4096
  std::uint32_t segment_count = 4;         // power of two, >= 2
  Policy policy = Policy::Block;
  std::uint32_t frame_alignment = 64;  // power of two in [32, 4096]; 64 = one frame per line
  std::uint32_t max_producers = 16;
  std::uint32_t max_consumers = 16;
  bool exclusive_producer = false;  // one producer at a time: no atomic read-modify-write
  bool prefault = true;             // touch every page at creation
  bool huge_pages = false;          // ask for transparent huge pages (madvise)
  bool lock_memory = false;         // mlock the mapping
  Placement placement{};
  mode_t mode = 0640;  // never world-writable: the o+w bit is refused
  // Supervision by shmbusd (nobody enforces these without a daemon), in ms, 0 = never:
  // a claim not committed this long is revoked: consumers skip it, and the
  // producer's commit() returns Revoked (Aeron's publication unblock timeout, 15 s);
  std::uint32_t hung_producer_timeout_ms = 1000;
  // `block` only: a consumer whose cursor does not move this long while producers
  // wait for it is evicted (its poll() returns Evicted). Off by default: a
  // `block` topic promises not to lose unread data.
  std::uint32_t slow_consumer_timeout_ms = 0;
  // Durability: shmbusd's spiller records every committed frame in segment
  // files under the bus's data directory (Producer::wait_durable waits for
  // one). On `block` its cursor holds producers back like a consumer's, so
  // nothing is overwritten before it is on disk; on `overwrite` a lapped
  // spiller records the lost range as a gap. Needs shmbusd: Topic::create
  // refuses a durable topic when no daemon serves the bus (ENOTSUP).
  bool durable = false;
  Fsync fsync = Fsync::Interval;
  std::uint32_t fsync_interval_ms = 100;  // with Fsync::Interval: 1..60000
  // Retention of a durable topic's segment files (Kafka's retention.bytes
  // and retention.ms), 0: no limit. The spiller deletes whole segment files,
  // oldest first, never the one it writes: while the files hold more than
  // retention_bytes, or while the oldest was last written to more than
  // retention_ms ago. A reader with a file open reads it to its end.
  std::uint64_t retention_bytes = 0;
  std::uint64_t retention_ms = 0;
};

struct ProducerOptions {
  std::uint32_t partition = 0;
  // Stamp CLOCK_REALTIME into each frame (Message::timestamp_ns), from the
  // time stamp counter (shmbus/detail/clock.hpp): a few ns a message, so
  // on by default: recordings, replay by time, retention by time and `shmbus
  // tail --from TIME` need it. Off: frames carry 0.
  bool timestamps = true;
  WaitStrategy wait = WaitStrategy::SpinYield;  // for the rare in-claim wait on `block`
  bool prefault = true;
  // Publish with a compiler barrier instead of a full fence (an `mfence`)
  // before looking for sleeping consumers: a consumer about to sleep pays for
  // both with membarrier(2), which interrupts once every CPU then running a
  // thread of a process that enabled this (~1-2 µs; 18 µs in a VM). The full
  // fence costs a producer about a quarter of its 64 B throughput here
  // (README, "Performance"). Turn it off for a process on an isolated core
  // that must never be interrupted while futex consumers (WaitStrategy::Futex,
  // `shmbus tail`) come and go anywhere on the machine (and do not fork it
  // from a process that enabled it). Per process: once one producer of a
  // process enabled it, all its producers publish this way.
  bool light_fence = true;
  // After each frame (header and payload) longer than a cache line, take the
  // next frame's second line for writing (x86 PREFETCHW), so that the next
  // message's commit does not wait for that line to come from memory or
  // another core. Never a line that may be the next frame's first, on which
  // consumers spin (at a segment end it takes nothing). For request/response
  // traffic, where the producer idles between messages: 64 B round trips a
  // few percent faster here, in nearly every run. What it costs a stream is not settled:
  // 64 B one-way throughput 0.67x-0.91x of the default in two series here
  // (most likely a consumer close behind, whose hardware prefetcher takes the
  // line back before it is written); README, "Performance", has the figures.
  // Chronicle Queue's pretoucher and Aeron's pre-touch warm memory ahead of
  // the writer the same way, but far ahead of it. `exclusive_producer` topics
  // only: a shared ring tells where the next frame goes only at its claim.
  bool pretouch_next_frame = false;
};

struct ConsumerOptions {
  // Time: the first message stamped at or after time_ns, in position order
  // (as a scan from the oldest would find it, however producers' clocks
  // differ); on a durable topic from the files too. None yet: Latest.
  enum class Start : std::uint8_t { Latest, Earliest, Position, Time };
  std::uint32_t partition = 0;
  Start start = Start::Latest;
  std::uint64_t position = 0;  // with Start::Position: a frame boundary still in the ring
  std::int64_t time_ns = 0;    // with Start::Time: CLOCK_REALTIME ns
  WaitStrategy wait = WaitStrategy::SpinYield;
  bool prefault = true;
  // false: an observer (monitors, `shmbus tail`). It takes no cursor slot,
  // so it never holds producers back, on `block` topics too: it copies every
  // frame out and validates it against the tail, as `overwrite` readers do,
  // and gets Lagged with the lost range when producers lap it. Never Evicted.
  bool gating = true;
  // Non-empty: a durable named cursor (Kafka's committed offset, a JMS
  // durable subscription). Its slot belongs to the name, not to this
  // process: it keeps its position, and keeps gating `block` producers
  // there, after this consumer closes or dies, until Topic::delete_cursor.
  // Opening the name again resumes at that position (`start` applies only
  // when the name is new); one holder at a time (EBUSY while it lives).
  // Positions are stored per poll batch: a holder that dies mid-batch has
  // that batch delivered again (at least once). 1..63 of [A-Za-z0-9._-].
  std::string name;
};

}  // namespace shmbus
