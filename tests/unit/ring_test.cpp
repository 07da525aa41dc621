// Behaviour of one partition through the public API: publish, poll, keys,
// properties, claim/commit/abort, seek, policies.
#include <gtest/gtest.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_bus.hpp"

namespace shmbus {
namespace {

using testing::bytes;
using testing::text;

class RingTest : public testing::TestBus {};

TopicOptions small(Policy policy, bool exclusive = false) {
  TopicOptions o;
  o.exclusive_producer = exclusive;
  o.segment_bytes = 4096;
  o.segment_count = 4;
  o.policy = policy;
  return o;
}

std::vector<std::string> drain(Consumer& c, std::uint32_t max = 1000) {
  std::vector<std::string> got;
  PollResult r = c.poll([&](const Message& m) { got.emplace_back(text(m.payload)); }, max);
  EXPECT_TRUE(r.status == Status::Ok || r.status == Status::Empty) << to_string(r.status);
  EXPECT_EQ(r.count, got.size());
  return got;
}

// On by default, from the counter clock; close to CLOCK_REALTIME at publish,
// across clock anchors (one every 10 ms), and 0 for a producer that opts out.
TEST_F(RingTest, TimestampsAreOnByDefaultAndFollowTheClock) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ProducerOptions unstamped;
  unstamped.timestamps = false;
  auto q = Producer::open(bus, "t", unstamped);
  ASSERT_TRUE(c && p && q);
  auto realtime = [] {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
  };
  for (int i = 0; i < 30; ++i) {
    const std::int64_t before = realtime();
    ASSERT_EQ(p->offer(bytes("x")), Status::Ok);
    const std::int64_t after = realtime();
    std::int64_t stamped = 0;
    ASSERT_EQ(c->poll([&](const Message& m) { stamped = m.timestamp_ns; }).count, 1u);
    // Within 20 µs of the interval around the offer: the counter's rate is
    // measured over >= 1 ms, so an anchor's 10 ms move a stamp by < 1 µs.
    EXPECT_GE(stamped, before - 20'000) << "offer " << i;
    EXPECT_LE(stamped, after + 20'000) << "offer " << i;
    std::this_thread::sleep_for(std::chrono::milliseconds(i % 3 == 0 ? 11 : 1));
  }
  ASSERT_EQ(q->offer(bytes("y")), Status::Ok);
  EXPECT_EQ(c->poll([](const Message& m) { EXPECT_EQ(m.timestamp_ns, 0); }).count, 1u);
}

TEST_F(RingTest, OfferThenPollInOrder) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto c = Consumer::open(bus, "t");
  ASSERT_TRUE(c) << c.error().message;
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p) << p.error().message;
  for (int i = 0; i < 10; ++i) ASSERT_EQ(p->offer(bytes("m" + std::to_string(i))), Status::Ok);
  auto got = drain(*c);
  ASSERT_EQ(got.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(got[i], "m" + std::to_string(i));
  EXPECT_EQ(c->poll([](const Message&) {}, 10).status, Status::Empty);
}

// Consumers hold a scratch buffer for copied bodies and properties that
// starts at 64 KiB and grows to the largest frame they met (never past a
// segment): a frame of several hundred KiB reaches an in-place reader and a
// copying observer intact, before and after smaller ones.
TEST_F(RingTest, FramesLargerThanTheInitialScratchArriveIntact) {
  TopicOptions o;
  o.segment_bytes = 1 << 20;
  o.segment_count = 2;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  ConsumerOptions observing;
  observing.gating = false;
  auto c = Consumer::open(bus, "t");
  auto observer = Consumer::open(bus, "t", observing);
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && observer && p);
  std::vector<std::string> bodies = {"small", std::string(300 * 1024, 'a'), "tiny",
                                     std::string(700 * 1024, 'b'), "last"};
  for (std::size_t i = 0; i < bodies.size(); ++i) bodies[i][0] = static_cast<char>('0' + i);
  const std::string big_header(1000, 'h');
  for (const std::string& body : bodies) {
    Property props[] = {{"n", static_cast<std::int64_t>(body.size())}, {"h", big_header}};
    ASSERT_EQ(p->offer(bytes(body), "k", props), Status::Ok) << body.size();
  }
  for (Consumer* reader : {&*c, &*observer}) {
    std::size_t seen = 0;
    PollResult r = reader->poll(
        [&](const Message& m) {
          ASSERT_LT(seen, bodies.size());
          EXPECT_EQ(text(m.payload), bodies[seen]);
          EXPECT_EQ(m.key, "k");
          EXPECT_EQ(m.properties.find("n").value_or("?").int64(),
                    static_cast<std::int64_t>(bodies[seen].size()));
          EXPECT_EQ(m.properties.find("h").value_or("?").string(), big_header);
          ++seen;
        },
        100);
    EXPECT_EQ(r.status, Status::Ok);
    EXPECT_EQ(seen, bodies.size());
  }
}

TEST_F(RingTest, KeyPropertiesAndTimestamp) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  const std::byte raw[] = {std::byte{0}, std::byte{0xff}};
  Property props[] = {{"type", "trade"},
                      {"venue", "XNAS"},
                      {"", ""},
                      {"qty", 100},
                      {"px", -1.5},
                      {"odd", true},
                      {"raw", PropertyValue::bytes(raw)},
                      {"min", INT64_MIN}};
  ASSERT_EQ(p->offer(bytes("payload"), "AAPL", props), Status::Ok);
  int seen = 0;
  auto r = c->poll([&](const Message& m) {
    ++seen;
    EXPECT_EQ(text(m.payload), "payload");
    EXPECT_EQ(m.key, "AAPL");
    EXPECT_EQ(m.properties.size(), 8);
    EXPECT_EQ(m.properties.find("venue").value_or("?"), "XNAS");
    EXPECT_EQ(m.properties.find("").value_or("?"), "");
    EXPECT_FALSE(m.properties.find("nope").has_value());
    // Each value keeps its type; the accessors of other types say nothing.
    const PropertyValue qty = m.properties.find("qty").value_or("?");
    EXPECT_EQ(qty.type(), PropertyType::Int64);
    EXPECT_EQ(qty.int64(), 100);
    EXPECT_FALSE(qty.string().has_value());
    EXPECT_FALSE(qty.float64().has_value());
    EXPECT_EQ(m.properties.find("px").value_or("?").float64(), -1.5);
    EXPECT_EQ(m.properties.find("odd").value_or("?").boolean(), true);
    EXPECT_EQ(m.properties.find("min").value_or("?").int64(), INT64_MIN);
    const auto got_raw = m.properties.find("raw").value_or("?").bytes();
    ASSERT_TRUE(got_raw.has_value());
    EXPECT_TRUE(std::ranges::equal(*got_raw, raw));
    EXPECT_EQ(m.properties.find("type").value_or(0).type(), PropertyType::String);
    EXPECT_GT(m.timestamp_ns, 1'600'000'000'000'000'000LL);
  });
  EXPECT_EQ(r.status, Status::Ok);
  EXPECT_EQ(seen, 1);
}

TEST_F(RingTest, ClaimCommitAbort) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  Claim a;
  ASSERT_EQ(p->claim(5, a), Status::Ok);
  Claim second;
  EXPECT_EQ(p->claim(5, second), Status::Invalid) << "one open claim per producer";
  std::memcpy(a.payload.data(), "hello", 5);
  EXPECT_TRUE(drain(*c).empty()) << "nothing is visible before commit";
  ASSERT_EQ(p->commit(a), Status::Ok);
  EXPECT_EQ(p->commit(a), Status::Invalid) << "a claim commits once";
  Claim b;
  ASSERT_EQ(p->claim(7, b), Status::Ok);
  ASSERT_EQ(p->abort(b), Status::Ok);
  ASSERT_EQ(p->offer(bytes("after")), Status::Ok);
  EXPECT_EQ(drain(*c), (std::vector<std::string>{"hello", "after"}));
}

// Both producer kinds (the parameter: exclusive_producer): an exclusive
// producer's offer has a fast path of its own.
class ProducerKindTest : public RingTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    RingTest::SetUp();
    ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block, GetParam())));
    auto consumer = Consumer::open(bus, "t");
    auto producer = Producer::open(bus, "t");
    ASSERT_TRUE(consumer && producer);
    c.emplace(std::move(consumer).value());
    p.emplace(std::move(producer).value());
  }
  std::optional<Consumer> c;
  std::optional<Producer> p;
};
INSTANTIATE_TEST_SUITE_P(, ProducerKindTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& kind) {
                           return kind.param ? "Exclusive" : "Shared";
                         });

TEST_P(ProducerKindTest, TooLargeEmptyAndSegmentPadding) {
  EXPECT_EQ(p->max_payload(), 4096u - 24);
  std::string big(p->max_payload() + 1, 'x');
  EXPECT_EQ(p->offer(bytes(big)), Status::TooLarge);
  ASSERT_EQ(p->offer({}), Status::Ok);
  EXPECT_EQ(drain(*c), std::vector<std::string>{""});
  // 1100-byte payloads make 1152-byte frames, which do not divide a 4096-byte
  // segment: claims cross segment ends and become PAD.
  std::string m(1100, 'y');
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(p->offer(bytes(m)), Status::Ok);
    auto got = drain(*c);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], m);
  }
  Claim cl;
  ASSERT_EQ(p->claim(4096 - 24, cl), Status::Ok) << "a frame of a whole segment";
  EXPECT_EQ(cl.position % 4096, 0u);
  const std::uint64_t last = cl.position;
  ASSERT_EQ(p->commit(cl), Status::Ok);
  EXPECT_EQ(drain(*c).size(), 1u);
  EXPECT_EQ(c->position(), last + 4096);
}

TEST_P(ProducerKindTest, BlockPolicyNeverOverwritesUnreadData) {
  std::string m(100, 'z');  // 128-byte frames: 128 per ring
  int sent = 0;
  while (p->offer(bytes(m)) == Status::Ok) ++sent;
  EXPECT_EQ(sent, 4 * 4096 / 128);
  EXPECT_EQ(p->offer(bytes(m)), Status::Full);
  EXPECT_EQ(drain(*c, 1).size(), 1u);
  EXPECT_EQ(p->offer(bytes(m)), Status::Ok) << "one frame read frees one frame";
  EXPECT_EQ(p->offer(bytes(m)), Status::Full);
  EXPECT_EQ(drain(*c, 10000).size(), static_cast<std::size_t>(sent));
}

// offer() with timestamps on, and while a claim is open (Invalid; the claim
// stays open and commits): both kinds, the exclusive one's inline path too.
TEST_P(ProducerKindTest, TimestampsAndOfferBesideAnOpenClaim) {
  p.reset();  // the same kind of producer, with timestamps
  ProducerOptions o;
  o.timestamps = true;
  auto opened = Producer::open(bus, "t", o);
  ASSERT_TRUE(opened) << opened.error().message;
  Producer& stamped = *opened;
  const std::int64_t before = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  ASSERT_EQ(stamped.offer(bytes("stamped")), Status::Ok);
  std::int64_t seen = 0;
  EXPECT_EQ(c->poll([&](const Message& m) { seen = m.timestamp_ns; }).count, 1u);
  EXPECT_GE(seen, before);
  EXPECT_LT(seen, before + 60'000'000'000LL);

  Claim cl;
  ASSERT_EQ(stamped.claim(5, cl), Status::Ok);
  EXPECT_EQ(stamped.offer(bytes("during")), Status::Invalid);
  std::memcpy(cl.payload.data(), "claim", 5);
  ASSERT_EQ(stamped.commit(cl), Status::Ok);
  ASSERT_EQ(stamped.offer(bytes("after")), Status::Ok);
  EXPECT_EQ(drain(*c), (std::vector<std::string>{"claim", "after"}));
}

// A handler that throws: the messages before it are consumed, the one that
// threw is delivered again, then the rest (block: the inline in-place loop;
// overwrite: the library's copying loop).
TEST_F(RingTest, ThrowingHandlerGetsItsMessageAgain) {
  for (Policy policy : {Policy::Block, Policy::Overwrite}) {
    const std::string name = policy == Policy::Block ? "b" : "o";
    ASSERT_TRUE(Topic::create(bus, name, small(policy, /*exclusive=*/true)));
    auto c = Consumer::open(bus, name);
    auto p = Producer::open(bus, name);
    ASSERT_TRUE(c && p);
    for (const char* m : {"1", "2", "3"}) ASSERT_EQ(p->offer(bytes(m)), Status::Ok);
    std::vector<std::string> got;
    struct Thrown {};
    EXPECT_THROW(c->poll(
                     [&](const Message& m) {
                       if (text(m.payload) == "2") throw Thrown{};
                       got.emplace_back(text(m.payload));
                     },
                     10),
                 Thrown);
    EXPECT_EQ(got, std::vector<std::string>{"1"}) << name;
    EXPECT_EQ(drain(*c), (std::vector<std::string>{"2", "3"})) << name;
  }
}

// poll_wait with room for no message returns at once, as poll() does.
TEST_F(RingTest, PollWaitForNoMessagesReturnsAtOnce) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  ASSERT_EQ(p->offer(bytes("kept")), Status::Ok);
  const auto t0 = std::chrono::steady_clock::now();
  const PollResult r = c->poll_wait([](const Message&) { ADD_FAILURE() << "max was 0"; }, 0,
                                    std::chrono::seconds(60));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  EXPECT_EQ(r.status, Status::Empty);
  EXPECT_EQ(r.count, 0u);
  EXPECT_EQ(drain(*c), std::vector<std::string>{"kept"});
}

// pretouch_next_frame: the line it takes is the next frame's second,
// wrapping at the ring's end, and none where that line starts a segment
// (the next frame's first line, after a pad); a shared topic refuses it,
// naming it. (A prefetch changes nothing consumers read: the harness's
// pretouch rows, run by bench-smoke, publish with it.)
TEST(PretouchNextFrame, TakesTheSecondLineOfTheFrameAtTheTail) {
  constexpr std::uint64_t kSegment = 4096;
  std::vector<std::byte> ring(4 * kSegment);
  detail::OfferState s;
  s.frames = ring.data();
  s.mask = ring.size() - 1;
  s.segment_bytes = kSegment;
  const std::pair<std::uint64_t, std::ptrdiff_t> cases[] = {
      {0, 64},
      {32, 64},
      {64, 128},
      {kSegment, kSegment + 64},
      {kSegment + 32, kSegment + 64},
      {5 * ring.size() + 128, 192},
      {5 * ring.size() + kSegment + 64, kSegment + 128}};
  for (auto [tail, line] : cases) {
    s.local_tail = tail;
    ASSERT_NE(detail::next_frame_second_line(s), nullptr) << "tail " << tail;
    EXPECT_EQ(detail::next_frame_second_line(s) - ring.data(), line) << "tail " << tail;
  }
  for (std::uint64_t tail :
       {kSegment - 64, kSegment - 32, 2 * kSegment - 64, ring.size() - 64, 3 * ring.size() - 32}) {
    s.local_tail = tail;
    EXPECT_EQ(detail::next_frame_second_line(s), nullptr) << "tail " << tail;
  }
}

TEST_F(RingTest, PretouchNextFrameIsRefusedOnASharedTopic) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  ProducerOptions o;
  o.pretouch_next_frame = true;
  auto p = Producer::open(bus, "t", o);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, EINVAL);
  EXPECT_NE(p.error().message.find("pretouch_next_frame"), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("exclusive_producer"), std::string::npos) << p.error().message;
}

TEST_F(RingTest, BlockPolicyWithoutConsumersRunsFree) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(p->offer(bytes("x")), Status::Ok);
}

TEST_F(RingTest, OverwritePolicyReportsLostRange) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Overwrite)));
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  std::string m(100, 'w');
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(p->offer(bytes(m + std::to_string(i))), Status::Ok);
  std::vector<std::string> got;
  PollResult r = c->poll([&](const Message& msg) { got.emplace_back(text(msg.payload)); }, 10000);
  ASSERT_EQ(r.status, Status::Lagged);
  EXPECT_EQ(r.count, 0u);
  EXPECT_EQ(c->lost().from, 0u);
  EXPECT_GT(c->lost().to, 0u);
  EXPECT_EQ(c->lost().to % 4096, 0u) << "rejoins at a segment start";
  EXPECT_EQ(c->position(), c->lost().to);
  r = c->poll([&](const Message& msg) { got.emplace_back(text(msg.payload)); }, 10000);
  EXPECT_EQ(r.status, Status::Ok);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), m + "999") << "reads on to the newest frame";
  // the frames after the rejoin point are consecutive
  int first = std::stoi(got.front().substr(100));
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(got[i], m + std::to_string(first + static_cast<int>(i)));
}

TEST_F(RingTest, StartEarliestLatestAndSeek) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p);
  std::vector<std::uint64_t> positions;
  for (int i = 0; i < 5; ++i) {
    Claim cl;
    ASSERT_EQ(p->claim(1, cl), Status::Ok);
    cl.payload[0] = std::byte('0' + i);
    positions.push_back(cl.position);
    ASSERT_EQ(p->commit(cl), Status::Ok);
  }
  ConsumerOptions early;
  early.start = ConsumerOptions::Start::Earliest;
  auto e = Consumer::open(bus, "t", early);
  ASSERT_TRUE(e);
  EXPECT_EQ(drain(*e), (std::vector<std::string>{"0", "1", "2", "3", "4"}));
  auto l = Consumer::open(bus, "t");
  ASSERT_TRUE(l);
  EXPECT_TRUE(drain(*l).empty());
  ASSERT_TRUE(l->seek(positions[3]));
  EXPECT_EQ(drain(*l), (std::vector<std::string>{"3", "4"}));
  EXPECT_FALSE(l->seek(positions[1] + 1)) << "not aligned";
  auto bad = l->seek(1u << 30);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("outside the ring"), std::string::npos);
  ConsumerOptions at;
  at.start = ConsumerOptions::Start::Position;
  at.position = positions[2];
  auto a = Consumer::open(bus, "t", at);
  ASSERT_TRUE(a);
  EXPECT_EQ(drain(*a), (std::vector<std::string>{"2", "3", "4"}));
}

TEST_F(RingTest, ExclusiveProducerIsExclusive) {
  TopicOptions o = small(Policy::Block);
  o.exclusive_producer = true;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  auto second = Producer::open(bus, "t");
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("exclusive"), std::string::npos);
  std::string m(1000, 'e');
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(p->offer(bytes(m)), Status::Ok);
    ASSERT_EQ(drain(*c).size(), 1u);
  }
}

TEST_F(RingTest, TopicAdministration) {
  TopicOptions o = small(Policy::Overwrite);
  o.partitions = 3;
  ASSERT_TRUE(Topic::create(bus, "orders", o));
  auto again = Topic::create(bus, "orders", o);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("already exists"), std::string::npos);
  auto info = Topic::describe(bus, "orders");
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->partitions.size(), 3u);
  EXPECT_EQ(info->options.policy, Policy::Overwrite);
  ProducerOptions po;
  po.partition = 2;
  auto p = Producer::open(bus, "orders", po);
  ASSERT_TRUE(p);
  ConsumerOptions co;
  co.partition = 3;
  EXPECT_FALSE(Consumer::open(bus, "orders", co)) << "no partition 3";
  ASSERT_TRUE(Topic::remove(bus, "orders"));
  EXPECT_FALSE(Topic::describe(bus, "orders"));
}

TEST_F(RingTest, BadOptionsAndNamesAreRefusedByName) {
  TopicOptions o = small(Policy::Block);
  o.segment_bytes = 5000;
  auto r = Topic::create(bus, "t", o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("segment_bytes"), std::string::npos);
  o = small(Policy::Block);
  o.frame_alignment = 16;
  r = Topic::create(bus, "t", o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("frame_alignment"), std::string::npos);
  o = small(Policy::Block);
  o.mode = 0666;
  r = Topic::create(bus, "t", o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("world-writable"), std::string::npos);
  EXPECT_FALSE(Topic::create(bus, "../escape", small(Policy::Block)));
  auto missing = Consumer::open(bus, "nothing");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("does not exist"), std::string::npos);
}

TEST_F(RingTest, ConsumerSlotsAreLimitedAndReused) {
  TopicOptions o = small(Policy::Block);
  o.max_consumers = 2;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  {
    auto a = Consumer::open(bus, "t");
    auto b = Consumer::open(bus, "t");
    ASSERT_TRUE(a && b);
    auto c = Consumer::open(bus, "t");
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find("max_consumers"), std::string::npos);
  }
  EXPECT_TRUE(Consumer::open(bus, "t")) << "slots are freed when consumers close";
}

}  // namespace
}  // namespace shmbus

namespace shmbus {
namespace {

class PlacementRingTest : public testing::TestBus {};

TEST_F(PlacementRingTest, TopicMemoryIsBoundToTheNodeAsked) {
  TopicOptions o;
  o.segment_bytes = 4096;
  o.placement = {Placement::Kind::Node, 0};
  auto made = Topic::create(bus, "on0", o);
  if (!made && made.error().code == EPERM) GTEST_SKIP() << made.error().message;
  ASSERT_TRUE(made) << made.error().message;
  o.placement = {Placement::Kind::CallerNode, -1};
  ASSERT_TRUE(Topic::create(bus, "here", o));
  o.placement = {Placement::Kind::Node, 99};
  auto bad = Topic::create(bus, "nowhere", o);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("NUMA node 99"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(Topic::describe(bus, "nowhere")) << "nothing is left behind";
}

}  // namespace
}  // namespace shmbus

namespace shmbus {
namespace {

class TopicRemoveTest : public testing::TestBus {};

// A creator killed between the ring file and the cursor file leaves half a
// topic: it must still be removable, and then creatable again.
TEST_F(TopicRemoveTest, HalfCreatedTopicIsRemovable) {
  TopicOptions o;
  o.segment_bytes = 4096;
  o.partitions = 2;
  ASSERT_TRUE(Topic::create(bus, "half", o));
  ASSERT_EQ(::unlink((dir() + "/half.1.cur").c_str()), 0);
  EXPECT_FALSE(Topic::describe(bus, "half"));
  ASSERT_TRUE(Topic::remove(bus, "half"));
  EXPECT_TRUE(Topic::create(bus, "half", o));
  auto missing = Topic::remove(bus, "never");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("does not exist"), std::string::npos);
}

}  // namespace
}  // namespace shmbus

namespace shmbus {
namespace {

// seek() accepts frame boundaries only: it walks the frames from the
// segment start; a position inside a frame is refused with an error that
// names the frame, never left to a consumer that would wait there forever.
TEST_F(RingTest, SeekRefusesAPositionInsideAFrame) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  std::vector<std::uint64_t> starts;
  for (int i = 0; i < 60;
       ++i) {  // 100-byte frames: 128 B each (64 B alignment), across segment ends
    starts.push_back(Topic::describe(bus, "t")->partitions[0].tail);
    ASSERT_EQ(p->offer(bytes(std::string(100, static_cast<char>('a' + i % 26)))), Status::Ok);
  }
  drain(*c);
  const std::uint64_t inside = starts[40] + 64;  // aligned, but inside frame 40
  auto bad = c->seek(inside);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, EINVAL);
  EXPECT_NE(bad.error().message.find("not a frame boundary"), std::string::npos)
      << bad.error().message;
  EXPECT_NE(bad.error().message.find(std::to_string(starts[40])), std::string::npos)
      << bad.error().message;
  // The cursor stayed where it was: the next message comes as before.
  ASSERT_EQ(p->offer(bytes("next")), Status::Ok);
  EXPECT_EQ(drain(*c), std::vector<std::string>{"next"});
  // Real boundaries are accepted, inside a segment and at its start.
  ASSERT_TRUE(c->seek(starts[41])) << "a frame start";
  auto got = drain(*c);
  ASSERT_EQ(got.size(), 60u - 41u + 1u);
  EXPECT_EQ(got[0], std::string(100, static_cast<char>('a' + 41 % 26)));
  ASSERT_TRUE(c->seek(4096 * 1)) << "a segment start";
  // Opening at a position goes through the same check.
  ConsumerOptions o;
  o.start = ConsumerOptions::Start::Position;
  o.position = inside;
  auto d = Consumer::open(bus, "t", o);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("not a frame boundary"), std::string::npos);
}

}  // namespace
}  // namespace shmbus

// Empty properties (a message without any, a default view, a block too short
// to hold a count) iterate as nothing. begin() used to offset the view's
// pointer by 2 even when it was null: undefined behaviour, which the
// UBSan build (-fno-sanitize-recover) stops at.
namespace shmbus {
namespace {
TEST(PropertyViewTest, EmptyPropertiesIterateAsNothing) {
  const std::byte one[1] = {std::byte{0}};
  const std::byte zero_count[2] = {std::byte{0}, std::byte{0}};
  for (const PropertyView& v : {PropertyView{}, PropertyView{std::span<const std::byte>{}},
                                PropertyView{std::span<const std::byte>(one, 1)},
                                PropertyView{std::span<const std::byte>(zero_count, 2)}}) {
    EXPECT_TRUE(v.empty());
    EXPECT_TRUE(v.begin() == v.end());
    int seen = 0;
    for (Property p : v) {
      (void)p;
      ++seen;
    }
    EXPECT_EQ(seen, 0);
    EXPECT_EQ(v.find("anything"), std::nullopt);
  }
}
}  // namespace
}  // namespace shmbus

namespace shmbus {
namespace {

// An observer (gating = false) never holds a block topic's producers back:
// they lap it, and it reports what it missed (Lagged), then reads on intact.
TEST_F(RingTest, ObserverNeverHoldsBlockProducersBack) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  ConsumerOptions o;
  o.gating = false;
  o.start = ConsumerOptions::Start::Earliest;
  auto observer = Consumer::open(bus, "t", o);
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(observer && p);
  EXPECT_EQ(Topic::describe(bus, "t")->partitions[0].consumers, 0u) << "it takes no slot";
  const std::string body(200, 'x');
  for (int i = 0; i < 400; ++i)  // 400 x 256 B: over six rings' worth
    ASSERT_EQ(p->offer(bytes(body + std::to_string(i))), Status::Ok) << "message " << i;
  std::vector<std::string> got;
  PollResult r = observer->poll([&](const Message& m) { got.emplace_back(text(m.payload)); }, 1000);
  EXPECT_EQ(r.status, Status::Lagged);
  EXPECT_EQ(observer->lost().from, 0u);
  EXPECT_GT(observer->lost().to, 0u);
  for (;;) {
    r = observer->poll([&](const Message& m) { got.emplace_back(text(m.payload)); }, 1000);
    if (r.status == Status::Empty) break;
    ASSERT_EQ(r.status, Status::Ok);
  }
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), body + "399") << "it read on to the newest message";
  EXPECT_FALSE(observer->rejoin()) << "an observer is never evicted";
  // A gating consumer still holds them back.
  auto gating = Consumer::open(bus, "t");
  ASSERT_TRUE(gating);
  Status s = Status::Ok;
  for (int i = 0; i < 400 && s == Status::Ok; ++i) s = p->offer(bytes(body));
  EXPECT_EQ(s, Status::Full);
}

}  // namespace
}  // namespace shmbus
