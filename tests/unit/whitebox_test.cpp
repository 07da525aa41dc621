// White-box tests of one partition. They open the partition's files directly
// (log::Ring) and set the shared words of layout.hpp by hand — the tail, frame
// headers, producer and cursor slots — to reach states that the public API
// reaches only slowly or by accident: positions near 2^63, half-written
// frames, stale commit words, lapped consumers, dead consumers and dead
// producers.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "log/layout.hpp"
#include "log/ring.hpp"
#include "shm/file.hpp"
#include "shm/process.hpp"
#include "test_bus.hpp"

namespace shmbus {
namespace {

using log::atomic;
using log::FrameHeader;
using log::FrameType;
using log::SlotState;

// Makes `who` the holder of a slot in state `st`, in a new generation, as a
// joiner does (its pid in the control word, its start time stamped). Returns
// the control word.
std::uint64_t hold(std::uint64_t& control, std::uint64_t& stamp, SlotState st,
                   const shm::ProcessId& who) {
  const std::uint64_t gen = log::generation_of(atomic(control).load()) + 1;
  atomic(stamp).store(log::make_stamp(who.start_time, gen));
  const std::uint64_t c = log::make_control(st, gen, who.pid);
  atomic(control).store(c);
  return c;
}
using testing::bytes;
using testing::text;

constexpr std::uint64_t kSeg = 4096;
constexpr std::uint32_t kSegs = 4;
constexpr std::uint64_t kCap = kSeg * kSegs;

TopicOptions small(Policy policy, bool exclusive = false) {
  TopicOptions o;
  o.segment_bytes = kSeg;
  o.segment_count = kSegs;
  o.policy = policy;
  o.exclusive_producer = exclusive;
  o.max_producers = 4;
  o.max_consumers = 4;
  return o;
}

// A message as sent, and where it landed.
struct Sent {
  std::uint64_t position = 0;
  std::string payload;
  std::string key;
  std::vector<std::pair<std::string, std::string>> props;

  // Body bytes of its frame (layout.hpp: [u16 key_len, key] [u32 props_len, props] payload).
  std::uint64_t body() const {
    std::uint64_t n = payload.size();
    if (!key.empty()) n += 2 + key.size();
    if (!props.empty()) {
      n += 4 + 2;
      for (const auto& [k, v] : props) n += 4 + k.size() + v.size();
    }
    return n;
  }
};

std::string random_text(std::mt19937_64& rng, std::size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// A message of 0..max_payload bytes; some carry a key, some properties.
Sent random_message(std::mt19937_64& rng, std::size_t max_payload) {
  Sent s;
  s.payload = random_text(rng, rng() % (max_payload + 1));
  if (rng() % 4 == 0) s.key = random_text(rng, 1 + rng() % 20);
  if (rng() % 6 == 0) {
    const std::size_t n = 1 + rng() % 3;
    for (std::size_t i = 0; i < n; ++i)
      s.props.emplace_back(random_text(rng, rng() % 8), random_text(rng, rng() % 16));
  }
  return s;
}

// Publishes `s` through claim/commit and records its position.
Status publish(Producer& p, Sent& s) {
  std::vector<Property> props;
  for (const auto& [k, v] : s.props) props.push_back({k, v});
  Claim c;
  if (Status st = p.claim(s.payload.size(), s.key, props, c); st != Status::Ok) return st;
  if (!s.payload.empty()) std::memcpy(c.payload.data(), s.payload.data(), s.payload.size());
  s.position = c.position;
  return p.commit(c);
}

void expect_message(const Message& m, const Sent& s) {
  EXPECT_EQ(m.position, s.position);
  EXPECT_TRUE(text(m.payload) == s.payload) << "payload of the frame at " << s.position;
  EXPECT_EQ(m.key, s.key) << "at " << s.position;
  ASSERT_EQ(m.properties.size(), s.props.size()) << "at " << s.position;
  std::size_t i = 0;
  for (Property pr : m.properties) {
    EXPECT_EQ(pr.name, s.props[i].first) << "at " << s.position;
    EXPECT_EQ(pr.value, s.props[i].second) << "at " << s.position;
    ++i;
  }
}

// Polls until Empty; every message must be the next one of `pending`.
void drain(Consumer& c, std::deque<Sent>& pending) {
  for (int guard = 0; guard < 100000; ++guard) {
    PollResult r = c.poll(
        [&](const Message& m) {
          ASSERT_FALSE(pending.empty()) << "unexpected message at " << m.position;
          expect_message(m, pending.front());
          pending.pop_front();
        },
        64);
    if (r.status == Status::Empty) return;
    ASSERT_EQ(r.status, Status::Ok) << to_string(r.status) << " at " << c.position();
  }
  FAIL() << "drain did not end";
}

// A process that has exited and been waited for: its pid names no live process.
shm::ProcessId exited_process() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  EXPECT_GT(pid, 0) << "fork: " << std::strerror(errno);
  if (pid <= 0) return {};
  // Until waited for it is a zombie, whose start time can still be read.
  const shm::ProcessId id{static_cast<std::uint32_t>(pid), shm::start_time_of(pid)};
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  EXPECT_FALSE(shm::alive(id));
  return id;
}

class WhiteboxTest : public testing::TestBus {
 protected:
  void wrap_around(Policy policy, bool exclusive);
};

// ---------------------------------------------------------------------------
// Positions near 2^63: the tail starts two rings below 2^63, so the test
// crosses it; every payload and position is checked over ~150 laps.

void WhiteboxTest::wrap_around(Policy policy, bool exclusive) {
  ASSERT_TRUE(Topic::create(bus, "t", small(policy, exclusive)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  constexpr std::uint64_t kStart = (std::uint64_t{1} << 63) - 2 * kCap;
  static_assert(kStart % kCap == 0);
  ring->tail().store(kStart, std::memory_order_release);

  auto c = Consumer::open(bus, "t");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->position(), kStart);
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p) << p.error().message;

  std::mt19937_64 rng(policy == Policy::Block ? 1 : 2);
  std::vector<Sent> all;
  std::deque<Sent> pending;
  std::uint64_t model = kStart;  // where an exclusive producer puts the next frame
  std::uint64_t end_prev = kStart;
  std::uint64_t until_drain = 1;
  int fulls = 0;
  constexpr int kMessages = 6000;
  for (int i = 0; i < kMessages; ++i) {
    Sent s = random_message(rng, 700);
    Status st;
    while ((st = publish(*p, s)) == Status::Full) {
      ASSERT_EQ(policy, Policy::Block) << "overwrite never reports Full";
      ++fulls;
      ASSERT_NO_FATAL_FAILURE(drain(*c, pending));
    }
    ASSERT_EQ(st, Status::Ok) << to_string(st);
    const std::uint64_t fb = ring->frame_bytes(s.body());
    ASSERT_EQ(s.position % ring->alignment(), 0u);
    ASSERT_GE(ring->segment_left(s.position), fb) << "a frame crosses a segment end";
    ASSERT_GE(s.position, end_prev) << "frames overlap";
    if (exclusive) {
      if (ring->segment_left(model) < fb) model += ring->segment_left(model);  // PAD
      ASSERT_EQ(s.position, model) << "message " << i;
      model += fb;
    } else {
      ASSERT_LT(s.position - end_prev, 2 * kSeg) << "message " << i;
    }
    end_prev = s.position + fb;
    pending.push_back(s);
    all.push_back(std::move(s));
    if (--until_drain == 0) {
      ASSERT_NO_FATAL_FAILURE(drain(*c, pending));
      // Overwrite: read often enough never to be lapped; block: run into Full now and then.
      until_drain = 1 + rng() % (policy == Policy::Block ? 80 : 3);
    }
  }
  ASSERT_NO_FATAL_FAILURE(drain(*c, pending));
  EXPECT_TRUE(pending.empty());
  const std::uint64_t tail = ring->tail().load(std::memory_order_acquire);
  EXPECT_GT(tail, std::uint64_t{1} << 63) << "the test must cross 2^63";
  EXPECT_GT(tail - kStart, 100 * kCap);
  EXPECT_EQ(c->position(), tail) << "trailing PADs are skipped";
  if (policy == Policy::Block) RecordProperty("fulls", fulls);

  // A consumer starting at Earliest reads the intact segments of the last
  // ring (by copy: they are older than its join) and gets the same data.
  ConsumerOptions early;
  early.start = ConsumerOptions::Start::Earliest;
  auto e = Consumer::open(bus, "t", early);
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->position(), ring->oldest_intact(tail));
  EXPECT_EQ(e->position() % kSeg, 0u);
  auto first = std::lower_bound(all.begin(), all.end(), e->position(),
                                [](const Sent& s, std::uint64_t q) { return s.position < q; });
  ASSERT_NE(first, all.end());
  std::deque<Sent> tail_part(first, all.end());
  EXPECT_GT(tail_part.size(), 5u);
  ASSERT_NO_FATAL_FAILURE(drain(*e, tail_part));
  EXPECT_TRUE(tail_part.empty());
}

TEST_F(WhiteboxTest, WrapAroundTwoToThe63Block) {
  wrap_around(Policy::Block, false);
}
TEST_F(WhiteboxTest, WrapAroundTwoToThe63BlockExclusive) {
  wrap_around(Policy::Block, true);
}
TEST_F(WhiteboxTest, WrapAroundTwoToThe63Overwrite) {
  wrap_around(Policy::Overwrite, false);
}
TEST_F(WhiteboxTest, WrapAroundTwoToThe63OverwriteExclusive) {
  wrap_around(Policy::Overwrite, true);
}

// ---------------------------------------------------------------------------
// Frames that do not divide a segment: the rest of the segment becomes a PAD
// frame, committed like any frame, and consumers skip it.

void expect_pad(const log::Ring& ring, std::uint64_t p, std::uint64_t bytes) {
  const FrameHeader* f = ring.frame_at(p);
  const std::uint64_t salt = ring.commit_word(0);
  EXPECT_EQ(salt & 1, 1u) << "the salt is odd";
  EXPECT_EQ(atomic(const_cast<FrameHeader*>(f)->commit).load(std::memory_order_acquire), p ^ salt)
      << "PAD at " << p;
  EXPECT_EQ(f->type, FrameType::Pad) << "at " << p;
  EXPECT_EQ(f->length, bytes - sizeof(FrameHeader)) << "at " << p;
  EXPECT_EQ(f->flags, 0) << "at " << p;
}

TEST_F(WhiteboxTest, SegmentEndPadding) {
  for (bool exclusive : {true, false}) {
    SCOPED_TRACE(exclusive ? "exclusive producer" : "shared producer");
    const char* topic = exclusive ? "ex" : "sh";
    ASSERT_TRUE(Topic::create(bus, topic, small(Policy::Block, exclusive)));
    auto ring = open_ring(topic);
    ASSERT_TRUE(ring);
    auto c = Consumer::open(bus, topic);
    auto p = Producer::open(bus, topic);
    ASSERT_TRUE(c && p);
    // 1100-byte payloads make 1152-byte frames: three fit in a segment, 640 bytes are left.
    std::deque<Sent> pending;
    std::vector<std::uint64_t> positions;
    for (int i = 0; i < 4; ++i) {
      Sent s;
      s.payload = std::string(1100, static_cast<char>('a' + i));
      ASSERT_EQ(publish(*p, s), Status::Ok);
      positions.push_back(s.position);
      pending.push_back(s);
    }
    ASSERT_EQ(ring->frame_bytes(1100), 1152u);
    EXPECT_EQ(positions[0], 0u);
    EXPECT_EQ(positions[1], 1152u);
    EXPECT_EQ(positions[2], 2304u);
    expect_pad(*ring, 3456, 640);  // the segment's last frame
    if (exclusive) {
      EXPECT_EQ(positions[3], 4096u);
    } else {
      // A shared producer's fetch_add claimed [3456, 4608): the part past the
      // segment end becomes a second PAD, at the next segment's start.
      expect_pad(*ring, 4096, 512);
      EXPECT_EQ(positions[3], 4608u);
    }
    ASSERT_NO_FATAL_FAILURE(drain(*c, pending));  // PADs are never handed out
    EXPECT_TRUE(pending.empty());
    EXPECT_EQ(c->position(), ring->tail().load());

    // A frame of exactly the rest of a segment needs no PAD.
    const std::uint64_t t = ring->tail().load();
    Sent fill;
    fill.payload = std::string(ring->segment_left(t) - sizeof(FrameHeader), 'f');
    ASSERT_EQ(publish(*p, fill), Status::Ok);
    EXPECT_EQ(fill.position, t);
    const std::uint64_t end = fill.position + ring->frame_bytes(fill.body());
    EXPECT_EQ(end % kSeg, 0u);
    EXPECT_EQ(ring->tail().load(), end);
    pending.push_back(fill);
    ASSERT_NO_FATAL_FAILURE(drain(*c, pending));
    EXPECT_EQ(c->position(), end);
  }
}

// A shared (fetch_add) producer that crosses a segment end pads the overhang;
// its next frame should then go right after it, not a segment further.
TEST_F(WhiteboxTest, SharedProducerFillsTheSegmentAfterACrossing) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  std::vector<std::uint64_t> positions;
  std::deque<Sent> pending;
  for (int i = 0; i < 7; ++i) {
    Sent s;
    s.payload = std::string(1100, static_cast<char>('a' + i));
    const Status st = publish(*p, s);
    ASSERT_EQ(st, Status::Ok) << to_string(st);
    positions.push_back(s.position);
    pending.push_back(s);
    ASSERT_NO_FATAL_FAILURE(drain(*c, pending));
  }
  // Crossings at 3456 (overhang [4096, 4608)) and 8064 (overhang [8192, 9216)).
  EXPECT_EQ(positions, (std::vector<std::uint64_t>{0, 1152, 2304, 4608, 5760, 6912, 9216}));
  ASSERT_NO_FATAL_FAILURE(drain(*c, pending));
}

// ---------------------------------------------------------------------------
// A frame is visible only once its commit word holds position ^ salt.

TEST_F(WhiteboxTest, HalfWrittenFrameIsNotDelivered) {
  for (Policy policy : {Policy::Block, Policy::Overwrite}) {
    SCOPED_TRACE(policy == Policy::Block ? "block" : "overwrite");
    const char* topic = policy == Policy::Block ? "b" : "o";
    ASSERT_TRUE(Topic::create(bus, topic, small(policy)));
    auto ring = open_ring(topic);
    ASSERT_TRUE(ring);
    auto c = Consumer::open(bus, topic);
    auto p = Producer::open(bus, topic);
    ASSERT_TRUE(c && p);
    std::vector<std::string> got;
    auto collect = [&](const Message& m) { got.emplace_back(text(m.payload)); };

    // 1. Claimed and written, not committed.
    Claim cl;
    ASSERT_EQ(p->claim(5, cl), Status::Ok);
    ASSERT_EQ(cl.position, 0u);
    std::memcpy(cl.payload.data(), "hello", 5);
    EXPECT_EQ(ring->frame_at(0)->length, 5u) << "claim() writes the header";
    for (int i = 0; i < 3; ++i) {
      PollResult r = c->poll(collect, 10);
      EXPECT_EQ(r.status, Status::Empty) << to_string(r.status);
      EXPECT_EQ(c->position(), 0u);
    }
    ASSERT_EQ(p->commit(cl), Status::Ok);
    EXPECT_EQ(c->poll(collect, 10).status, Status::Ok);
    EXPECT_EQ(got, std::vector<std::string>{"hello"});
    EXPECT_EQ(c->position(), 64u);

    // 2. By hand: tail advanced, header and body written, commit word not.
    const std::uint64_t q = ring->tail().fetch_add(64);
    ASSERT_EQ(q, 64u);
    FrameHeader* f = ring->frame_at(q);
    f->length = 5;
    f->type = FrameType::Data;
    f->flags = 0;
    f->timestamp = 0;
    std::memcpy(f + 1, "world", 5);
    EXPECT_EQ(c->poll(collect, 10).status, Status::Empty);
    EXPECT_EQ(c->position(), q);
    // A wrong commit word (another position) is "not ready" too.
    atomic(f->commit).store(ring->commit_word(q + 64), std::memory_order_release);
    EXPECT_EQ(c->poll(collect, 10).status, Status::Empty);
    EXPECT_EQ(c->position(), q);
    atomic(f->commit).store(ring->commit_word(q), std::memory_order_release);
    EXPECT_EQ(c->poll(collect, 10).status, Status::Ok);
    EXPECT_EQ(got, (std::vector<std::string>{"hello", "world"}));

    // 3. The producer carries on after the hand-made frame.
    ASSERT_EQ(p->offer(bytes("!")), Status::Ok);
    EXPECT_EQ(c->poll(collect, 10).status, Status::Ok);
    EXPECT_EQ(got, (std::vector<std::string>{"hello", "world", "!"}));
    EXPECT_EQ(c->position(), 192u);
  }
}

// Layout 4's rules for frames a reader does not know (layout.hpp, "Types come
// in ranges"): a control frame (type >= 0x8000) is stepped over by its
// length, in place and copied, and never delivered; an advisory flag (high
// byte) is ignored; a must-understand flag nobody defined is Corrupt.
TEST_F(WhiteboxTest, ControlFramesAndAdvisoryFlagsAreSteppedOverOrIgnored) {
  for (Policy policy : {Policy::Block, Policy::Overwrite}) {
    SCOPED_TRACE(policy == Policy::Block ? "block" : "overwrite");
    const char* topic = policy == Policy::Block ? "b" : "o";
    ASSERT_TRUE(Topic::create(bus, topic, small(policy)));
    auto ring = open_ring(topic);
    ASSERT_TRUE(ring);
    auto c = Consumer::open(bus, topic);
    ASSERT_TRUE(c);
    std::vector<std::string> got;
    auto collect = [&](const Message& m) { got.emplace_back(text(m.payload)); };
    // By hand, committed at once: a frame of `type` and `flags` with body `body`.
    auto put = [&](std::uint16_t type, std::uint16_t flags, std::string_view body) {
      const std::uint64_t n = ring->frame_bytes(body.size());
      const std::uint64_t q = ring->tail().fetch_add(n);
      FrameHeader* f = ring->frame_at(q);
      f->length = static_cast<std::uint32_t>(body.size());
      f->type = static_cast<FrameType>(type);
      f->flags = flags;
      f->timestamp = 0;
      std::memcpy(f + 1, body.data(), body.size());
      atomic(f->commit).store(ring->commit_word(q), std::memory_order_release);
      return q;
    };
    put(0x8000, 0, "a control frame of 100 bytes, which nobody delivers: " + std::string(47, '.'));
    put(0xffff, 0xffff, "another, with every flag");
    put(1, 0x8100, "advisory");
    EXPECT_EQ(c->poll(collect, 10).status, Status::Ok);
    EXPECT_EQ(got, std::vector<std::string>{"advisory"});
    const std::uint64_t bad = put(1, 0x0004, "must understand");
    EXPECT_EQ(c->poll(collect, 10).status, Status::Corrupt);
    EXPECT_EQ(c->position(), bad);
    // An observer (copies every frame) reads the same from the start.
    ConsumerOptions observer;
    observer.gating = false;
    observer.start = ConsumerOptions::Start::Earliest;
    auto o = Consumer::open(bus, topic, observer);
    ASSERT_TRUE(o);
    got.clear();
    EXPECT_EQ(o->poll(collect, 10).status, Status::Corrupt);
    EXPECT_EQ(got, std::vector<std::string>{"advisory"});
    EXPECT_EQ(o->position(), bad);
  }
}

// A ring whose features name one this library does not know is refused at
// attach, naming the file and the bits, by producers and consumers alike.
TEST_F(WhiteboxTest, UnknownRingFeatureIsRefusedAtAttach) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  {
    auto ring = open_ring("t");
    ASSERT_TRUE(ring);
    ring->ring_header()->config.features = 0x40;
  }
  auto p = Producer::open(bus, "t");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ENOTSUP);
  EXPECT_NE(p.error().message.find("t.0.log"), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("0x40"), std::string::npos) << p.error().message;
  auto c = Consumer::open(bus, "t");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ENOTSUP);
}

// Code compiled against headers of another frame ABI is refused.
TEST(FrameAbi, OtherHeadersAreRefused) {
  EXPECT_TRUE(detail::check_frame_abi(detail::kFrameAbi));
  const Outcome other = detail::check_frame_abi(detail::kFrameAbi - 1);
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("rebuild"), std::string::npos) << other.error().message;
  EXPECT_NE(other.error().message.find(std::to_string(detail::kFrameAbi - 1)), std::string::npos);
}

// A commit word left by the previous lap (p - capacity) ^ salt, or one from a
// later lap, does not make the frame at p ready.
TEST_F(WhiteboxTest, StaleCommitWordIsNotReady) {
  for (Policy policy : {Policy::Block, Policy::Overwrite}) {
    SCOPED_TRACE(policy == Policy::Block ? "block" : "overwrite");
    const char* topic = policy == Policy::Block ? "b" : "o";
    ASSERT_TRUE(Topic::create(bus, topic, small(policy)));
    auto ring = open_ring(topic);
    ASSERT_TRUE(ring);
    // The consumer joins at p, so that on block it reads p in place.
    const std::uint64_t p = 5 * kCap;
    ring->tail().store(p);
    auto c = Consumer::open(bus, topic);
    ASSERT_TRUE(c);
    ASSERT_EQ(c->position(), p);
    ASSERT_EQ(ring->tail().fetch_add(64), p);  // claimed by hand
    FrameHeader* f = ring->frame_at(p);
    f->length = 5;
    f->type = FrameType::Data;
    f->flags = 0;
    std::memcpy(f + 1, "stale", 5);
    std::vector<std::string> got;
    auto collect = [&](const Message& m) { got.emplace_back(text(m.payload)); };
    const std::uint64_t stale[] = {
        ring->commit_word(p - kCap),      // the previous lap
        ring->commit_word(p - 2 * kCap),  // older
        ring->commit_word(p + kCap),      // a later lap
        ring->commit_word(p + 64),        // another frame
        0,                                // never written
        p,                                // the position without the salt
    };
    for (std::uint64_t word : stale) {
      atomic(f->commit).store(word, std::memory_order_release);
      PollResult r = c->poll(collect, 10);
      EXPECT_EQ(r.status, Status::Empty) << to_string(r.status) << " commit word " << word;
      EXPECT_EQ(c->position(), p);
    }
    EXPECT_TRUE(got.empty());
    atomic(f->commit).store(ring->commit_word(p), std::memory_order_release);
    EXPECT_EQ(c->poll(collect, 10).status, Status::Ok);
    EXPECT_EQ(got, std::vector<std::string>{"stale"});
    EXPECT_EQ(c->position(), p + 64);
  }

  // The same through a producer: after exactly one ring, the frame at the
  // tail still carries the commit word of the first lap.
  ASSERT_TRUE(Topic::create(bus, "lap", small(Policy::Overwrite)));
  auto ring = open_ring("lap");
  ASSERT_TRUE(ring);
  auto p = Producer::open(bus, "lap");
  ASSERT_TRUE(p);
  for (std::uint64_t i = 0; i < kCap / 256; ++i)
    ASSERT_EQ(p->offer(bytes(std::string(232, 'x'))), Status::Ok);
  ASSERT_EQ(ring->tail().load(), kCap);
  EXPECT_EQ(atomic(ring->frame_at(kCap)->commit).load(), ring->commit_word(0));
  auto c = Consumer::open(bus, "lap");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->position(), kCap);
  int seen = 0;
  EXPECT_EQ(c->poll([&](const Message&) { ++seen; }, 10).status, Status::Empty);
  EXPECT_EQ(seen, 0);
  ASSERT_EQ(p->offer(bytes("next lap")), Status::Ok);
  EXPECT_EQ(c->poll(
                 [&](const Message& m) {
                   EXPECT_EQ(text(m.payload), "next lap");
                   ++seen;
                 },
                 10)
                .status,
            Status::Ok);
  EXPECT_EQ(seen, 1);
}

// ---------------------------------------------------------------------------
// Overwrite: a consumer lapped by several rings reports Lagged, rejoins at a
// segment start, and reads intact data from there on.

TEST_F(WhiteboxTest, LappedConsumerRejoinsWithIntactData) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Overwrite)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  std::mt19937_64 rng(7);
  std::map<std::uint64_t, Sent> sent;  // by position
  auto produce_rings = [&](std::uint64_t rings) {
    const std::uint64_t until = ring->tail().load() + rings * kCap;
    while (ring->tail().load() < until) {
      Sent s = random_message(rng, 600);
      ASSERT_EQ(publish(*p, s), Status::Ok);
      sent[s.position] = std::move(s);
    }
  };
  // Reads up to `max` messages; each must be the next one sent after `from`.
  auto read_on = [&](std::uint32_t max) -> std::uint64_t {
    std::uint64_t n = 0;
    auto next = sent.lower_bound(c->position());
    for (;;) {
      PollResult r = c->poll(
          [&](const Message& m) {
            ASSERT_NE(next, sent.end()) << "message past the last one sent";
            expect_message(m, next->second);
            ++next;
          },
          std::min<std::uint32_t>(max - static_cast<std::uint32_t>(n), 64));
      EXPECT_TRUE(r.status == Status::Ok || r.status == Status::Empty) << to_string(r.status);
      n += r.count;
      if (r.status != Status::Ok || n == max) break;
    }
    return n;
  };
  auto expect_lagged = [&](std::uint64_t from) {
    PollResult r = c->poll([](const Message&) { ADD_FAILURE() << "delivered while lapped"; }, 64);
    ASSERT_EQ(r.status, Status::Lagged) << to_string(r.status);
    EXPECT_EQ(r.count, 0u);
    const std::uint64_t t = ring->tail().load();
    EXPECT_EQ(c->lost().from, from);
    EXPECT_EQ(c->lost().to, ring->oldest_intact(t));
    EXPECT_EQ(c->lost().to % kSeg, 0u) << "rejoins at a segment start";
    EXPECT_GT(c->lost().to + kCap, t) << "rejoins within the last ring";
    EXPECT_EQ(c->position(), c->lost().to);
  };

  ASSERT_NO_FATAL_FAILURE(produce_rings(5));
  ASSERT_NO_FATAL_FAILURE(expect_lagged(0));
  EXPECT_GT(read_on(100000), 10u);
  EXPECT_EQ(c->position(), ring->tail().load());

  // Lapped again from the tail, then from the middle of a batch.
  std::uint64_t at = c->position();
  ASSERT_NO_FATAL_FAILURE(produce_rings(3));
  ASSERT_NO_FATAL_FAILURE(expect_lagged(at));
  EXPECT_EQ(read_on(3), 3u);
  at = c->position();
  ASSERT_NO_FATAL_FAILURE(produce_rings(4));
  ASSERT_NO_FATAL_FAILURE(expect_lagged(at));
  EXPECT_GT(read_on(100000), 10u);
  EXPECT_EQ(c->position(), ring->tail().load());
  EXPECT_EQ(c->poll([](const Message&) {}, 64).status, Status::Empty);
}

// ---------------------------------------------------------------------------
// Block: a consumer whose process died must not hold producers forever; a
// live one must.

TEST_F(WhiteboxTest, DeadConsumerIsReapedOnBlock) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  // Slot 0: ACTIVE at position 0, owned (for now) by this live process.
  log::CursorSlot& s = ring->cursor_slot(0);
  const shm::ProcessId me = shm::self();
  atomic(s.position).store(0);
  hold(s.control, s.stamp, SlotState::Active, me);

  auto c = Consumer::open(bus, "t");  // a real consumer, which keeps up
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  const std::string m(100, 'd');  // 128-byte frames
  std::uint64_t sent = 0, got = 0;
  auto read = [&] {
    c->poll(
        [&](const Message& msg) {
          EXPECT_EQ(text(msg.payload), m);
          ++got;
        },
        1000);
  };
  while (p->offer(bytes(m)) == Status::Ok) {
    ++sent;
    read();
  }
  EXPECT_EQ(sent, kCap / 128);
  EXPECT_EQ(got, sent);

  // A live owner is never reaped: Full across many reap intervals (1 ms).
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
  for (int tries = 0; tries < 10 || std::chrono::steady_clock::now() < until; ++tries) {
    ASSERT_EQ(p->offer(bytes(m)), Status::Full);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  EXPECT_EQ(log::state_of(atomic(s.control).load()), SlotState::Active);

  // The owner dies: within a few retries (generous bound) the producer goes on.
  const shm::ProcessId dead = exited_process();
  ASSERT_NE(dead.pid, 0u);
  hold(s.control, s.stamp, SlotState::Active, dead);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  Status st;
  int fulls = 0;
  while ((st = p->offer(bytes(m))) == Status::Full && std::chrono::steady_clock::now() < deadline) {
    ++fulls;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  ASSERT_EQ(st, Status::Ok) << "the dead consumer still blocks after 10 s";
  RecordProperty("fulls_before_reap", fulls);
  EXPECT_EQ(log::state_of(atomic(s.control).load()), SlotState::Free);
  ++sent;
  read();
  // Nothing holds the producer back now but the real consumer, which reads.
  for (std::uint64_t i = 0; i < 2 * kCap / 128; ++i) {
    ASSERT_EQ(p->offer(bytes(m)), Status::Ok);
    ++sent;
    read();
  }
  EXPECT_EQ(got, sent);
}

// ---------------------------------------------------------------------------
// A producer that died between claim and commit leaves a hole; opening a new
// producer pads it over, and consumers move on to the next real message.

void fake_dead_claim(log::Ring& ring, std::uint32_t slot, const shm::ProcessId& dead,
                     std::uint64_t bytes) {
  log::ProducerSlot& s = ring.producer_slot(slot);
  const std::uint64_t old = atomic(s.control).load();
  ASSERT_EQ(log::state_of(old), SlotState::Free);
  const std::uint64_t at = ring.tail().fetch_add(bytes);  // claimed, no frame written
  atomic(s.claim_position).store(at);
  atomic(s.claim_bytes).store(bytes);
  hold(s.control, s.stamp, SlotState::Active, dead);
}

TEST_F(WhiteboxTest, DeadProducerClaimIsPaddedOver) {
  const shm::ProcessId dead = exited_process();
  ASSERT_NE(dead.pid, 0u);
  for (Policy policy : {Policy::Block, Policy::Overwrite}) {
    SCOPED_TRACE(policy == Policy::Block ? "block" : "overwrite");
    const char* topic = policy == Policy::Block ? "b" : "o";
    ASSERT_TRUE(Topic::create(bus, topic, small(policy)));
    auto ring = open_ring(topic);
    ASSERT_TRUE(ring);
    auto c = Consumer::open(bus, topic);
    auto a = Producer::open(bus, topic);
    ASSERT_TRUE(c && a);
    std::vector<std::string> got;
    auto collect = [&](const Message& m) { got.emplace_back(text(m.payload)); };
    ASSERT_EQ(a->offer(bytes("first")), Status::Ok);
    EXPECT_EQ(c->poll(collect, 10).status, Status::Ok);

    // A hole of 128 bytes at 64, inside one segment.
    ASSERT_NO_FATAL_FAILURE(fake_dead_claim(*ring, 3, dead, 128));
    EXPECT_EQ(c->poll(collect, 10).status, Status::Empty);
    EXPECT_EQ(c->position(), 64u);
    ASSERT_EQ(a->offer(bytes("second")), Status::Ok);  // lands after the hole, at 192
    {
      auto b = Producer::open(bus, topic);  // reaps the dead producer
      ASSERT_TRUE(b);
      expect_pad(*ring, 64, 128);
      EXPECT_EQ(log::state_of(atomic(ring->producer_slot(3).control).load()), SlotState::Free);
      EXPECT_EQ(ring->producer_slot(3).claim_bytes, 0u);
      EXPECT_EQ(c->poll(collect, 10).status, Status::Ok);
      EXPECT_EQ(got, (std::vector<std::string>{"first", "second"}));
      EXPECT_EQ(c->position(), 256u);
    }

    // A hole that crosses a segment end: [kSeg - 64, kSeg + 64).
    const std::string m(40, 'm');  // 64-byte frames
    while (ring->tail().load() < kSeg - 64) ASSERT_EQ(a->offer(bytes(m)), Status::Ok);
    ASSERT_EQ(ring->tail().load(), kSeg - 64);
    ASSERT_NO_FATAL_FAILURE(fake_dead_claim(*ring, 3, dead, 128));
    ASSERT_EQ(a->offer(bytes("third")), Status::Ok);
    got.clear();
    EXPECT_EQ(c->poll(collect, 1000).status, Status::Ok);
    EXPECT_EQ(c->position(), kSeg - 64) << "stopped at the hole";
    const std::size_t before = got.size();
    auto b = Producer::open(bus, topic);
    ASSERT_TRUE(b);
    expect_pad(*ring, kSeg - 64, 64);
    expect_pad(*ring, kSeg, 64);
    EXPECT_EQ(c->poll(collect, 1000).status, Status::Ok);
    ASSERT_EQ(got.size(), before + 1);
    EXPECT_EQ(got.back(), "third");
    EXPECT_EQ(c->position(), kSeg + 128);
  }
}

// An exclusive producer killed inside offer() leaves its tail moved and no
// claim length (offer records only the position): the reaper pads from its
// claim_position to the tail, and keeps a frame it committed there.
TEST_F(WhiteboxTest, DeadExclusiveProducerIsPaddedToTheTail) {
  const shm::ProcessId dead = exited_process();
  ASSERT_NE(dead.pid, 0u);
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block, /*exclusive=*/true)));
  auto ring = open_ring();
  auto c = Consumer::open(bus, "t");
  ASSERT_TRUE(ring && c);
  log::ProducerSlot& slot = ring->producer_slot(0);
  auto fake_dead_owner = [&](std::uint64_t position, std::uint64_t tail) {
    const std::uint64_t old = atomic(slot.control).load();
    ASSERT_EQ(log::state_of(old), SlotState::Free);
    atomic(slot.claim_position).store(position);
    ring->tail().store(tail);
    hold(slot.control, slot.stamp, SlotState::Active, dead);
  };
  std::vector<std::string> got;
  auto collect = [&](const Message& m) { got.emplace_back(text(m.payload)); };
  slot.claim_position = 3 * kSeg;  // stale, as a previous owner may leave it
  {
    auto a = Producer::open(bus, "t");
    ASSERT_TRUE(a);
    EXPECT_EQ(slot.claim_position, 0u) << "set to the tail on joining";
    ASSERT_EQ(a->offer(bytes("first")), Status::Ok);
    ASSERT_EQ(a->offer(bytes("second")), Status::Ok);
    EXPECT_EQ(slot.claim_position, 64u);
    EXPECT_EQ(slot.claim_bytes, 0u) << "an exclusive offer records no length";
  }
  // Died after committing its claim [64, 128): nothing to pad.
  ASSERT_NO_FATAL_FAILURE(fake_dead_owner(64, 128));
  {
    auto b = Producer::open(bus, "t");  // reaps it
    ASSERT_TRUE(b);
    EXPECT_EQ(c->poll(collect, 10).status, Status::Ok);
    EXPECT_EQ(got, (std::vector<std::string>{"first", "second"}));
    EXPECT_EQ(c->position(), 128u);
  }
  // Died inside offer(): the tail moved over [128, 256), no byte written.
  ASSERT_NO_FATAL_FAILURE(fake_dead_owner(128, 256));
  EXPECT_EQ(c->poll(collect, 10).status, Status::Empty);
  auto b = Producer::open(bus, "t");
  ASSERT_TRUE(b);
  expect_pad(*ring, 128, 128);
  ASSERT_EQ(b->offer(bytes("third")), Status::Ok);
  EXPECT_EQ(c->poll(collect, 10).status, Status::Ok);
  EXPECT_EQ(got.back(), "third");
  EXPECT_EQ(c->position(), 320u);
}

// Block: a producer that died while waiting for room (its claim lies a ring
// ahead of an unread frame) must not be padded over before that frame is
// read: the PAD lands on the unread frame.
// A Joining slot is passing between owners (a joiner filling it in, or a
// reaper padding after a dead producer): an exclusive producer restarted at
// that moment waits for it instead of failing; one that stays Joining under
// a live holder is reported, naming the holder.
class PassingSlotTest : public WhiteboxTest {
 protected:
  // Slot 0 of the exclusive topic "t", Joining, held by this (live) process.
  std::uint64_t hold_slot_joining(log::ProducerSlot& slot) {
    return hold(slot.control, slot.stamp, SlotState::Joining, shm::self());
  }
};

TEST_F(PassingSlotTest, ExclusiveProducerWaitsForItsSlotToChangeOwners) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block, /*exclusive=*/true)));
  auto ring = open_ring();
  auto c = Consumer::open(bus, "t");
  ASSERT_TRUE(ring && c);
  log::ProducerSlot& slot = ring->producer_slot(0);
  const std::uint64_t joining = hold_slot_joining(slot);
  std::thread holder([&] {  // lets go a little later, as a reaper does when it is done
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::uint64_t c = joining;
    EXPECT_TRUE(
        atomic(slot.control).compare_exchange_strong(c, log::with_state(joining, SlotState::Free)));
  });
  auto p = Producer::open(bus, "t");
  holder.join();
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_EQ(p->offer(bytes("after")), Status::Ok);
  std::string got;
  EXPECT_EQ(c->poll([&](const Message& m) { got = text(m.payload); }, 10).status, Status::Ok);
  EXPECT_EQ(got, "after");
}

TEST_F(PassingSlotTest, SlotStuckBetweenOwnersIsReportedNamingTheHolder) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block, /*exclusive=*/true)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  hold_slot_joining(ring->producer_slot(0));
  auto p = Producer::open(bus, "t");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, EBUSY);
  EXPECT_NE(p.error().message.find("passing between owners"), std::string::npos)
      << p.error().message;
  EXPECT_NE(p.error().message.find("pid " + std::to_string(shm::self().pid)), std::string::npos)
      << p.error().message;
}

// A slot just taken, before its holder stamped it: the stamp is still the
// previous holder's, who left and exited. A reaper must judge the holder by
// the pid the taking CAS wrote, not by the previous holder's identity: a
// joiner (or a reaper) preempted right after its CAS, taken for dead, used to
// lose its slot and then store its pid and claim record into the next
// owner's slot (two exclusive producers on one ring; a live consumer reaped).
class UnstampedSlotTest : public WhiteboxTest {
 protected:
  // A live process that is not this one (the holder), killed by kill_holder().
  void SetUp() override {
    WhiteboxTest::SetUp();
    previous_ = exited_process();
    holder_ = ::fork();
    if (holder_ == 0) {
      ::pause();
      ::_exit(0);
    }
    ASSERT_GT(holder_, 0);
  }
  void TearDown() override {
    kill_holder();
    WhiteboxTest::TearDown();
  }
  void kill_holder() {
    if (holder_ <= 0) return;
    ::kill(holder_, SIGKILL);
    int status = 0;
    while (::waitpid(holder_, &status, 0) < 0 && errno == EINTR) {
    }
    holder_ = -1;
  }
  // The slot stamped by the previous holder (gone), then taken by the holder.
  void taken_unstamped(std::uint64_t& control, std::uint64_t& stamp) {
    hold(control, stamp, SlotState::Free, previous_);
    const std::uint64_t gen = log::generation_of(atomic(control).load()) + 1;
    atomic(control).store(
        log::make_control(SlotState::Joining, gen, static_cast<std::uint32_t>(holder_)));
  }
  shm::ProcessId previous_;
  pid_t holder_ = -1;
};

TEST_F(UnstampedSlotTest, ProducerSlotIsNotReapedWhileItsHolderLives) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Overwrite, /*exclusive=*/true)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  log::ProducerSlot& s = ring->producer_slot(0);
  taken_unstamped(s.control, s.stamp);
  const std::uint64_t taken = atomic(s.control).load();
  EXPECT_EQ(ring->reap_dead_producers(), 0u);
  EXPECT_EQ(atomic(s.control).load(), taken);
  kill_holder();  // dies before stamping: reaped by its pid
  EXPECT_EQ(ring->reap_dead_producers(), 1u);
  EXPECT_EQ(log::state_of(atomic(s.control).load()), SlotState::Free);
  EXPECT_TRUE(Producer::open(bus, "t"));
}

TEST_F(UnstampedSlotTest, CursorSlotIsNotReapedWhileItsHolderLives) {
  TopicOptions o = small(Policy::Block);
  o.max_consumers = 1;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  log::CursorSlot& s = ring->cursor_slot(0);
  taken_unstamped(s.control, s.stamp);
  EXPECT_EQ(ring->reap_dead_consumers(UINT64_MAX), 0u);
  EXPECT_FALSE(Consumer::open(bus, "t"));  // the one slot is the holder's
  kill_holder();
  EXPECT_TRUE(Consumer::open(bus, "t"));  // reaps it, then joins
}

TEST_F(WhiteboxTest, DeadProducerWaitingForRoomIsNotPaddedOverUnreadData) {
  const shm::ProcessId dead = exited_process();
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  auto c = Consumer::open(bus, "t");
  auto a = Producer::open(bus, "t");
  ASSERT_TRUE(c && a);
  const std::string m(40, 'u');  // 64-byte frames
  std::uint64_t sent = 0;
  while (a->offer(bytes(m)) == Status::Ok) ++sent;
  ASSERT_EQ(sent, kCap / 64);
  // The dead producer claimed [kCap, kCap + 64) and was waiting for the consumer.
  ASSERT_NO_FATAL_FAILURE(fake_dead_claim(*ring, 3, dead, 64));
  auto b = Producer::open(bus, "t");  // reaps it
  ASSERT_TRUE(b);
  std::uint64_t got = 0;
  for (int i = 0; i < 100; ++i) {
    PollResult r = c->poll(
        [&](const Message& msg) {
          EXPECT_EQ(text(msg.payload), m);
          ++got;
        },
        64);
    if (r.status != Status::Ok) break;
  }
  EXPECT_EQ(got, sent) << "the consumer lost unread frames, and stalls at " << c->position();
}

}  // namespace
}  // namespace shmbus
