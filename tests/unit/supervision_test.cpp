// White-box tests of supervision (layout.hpp, "Supervision"): what shmbusd
// does to a hung producer's claim (Ring::revoke_claim) and to a slow
// consumer's cursor (Ring::evict), done here by hand on the shared words,
// racing the owners' commit and poll.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "log/layout.hpp"
#include "log/ring.hpp"
#include "shm/file.hpp"
#include "test_bus.hpp"

namespace shmbus {
namespace {

// The daemon's revocation of the open claim recorded in producer slot `s`.
bool revoke_claim(const log::Ring& ring, log::ProducerSlot& s) {
  return ring.revoke_claim(log::atomic(s.claim_position).load(), log::atomic(s.claim_bytes).load());
}

using log::atomic;
using log::SlotState;
using testing::bytes;
using testing::text;

constexpr std::uint64_t kSeg = 4096;
constexpr std::uint32_t kSegs = 4;
constexpr std::uint64_t kCap = kSeg * kSegs;

TopicOptions small(Policy policy) {
  TopicOptions o;
  o.segment_bytes = kSeg;
  o.segment_count = kSegs;
  o.policy = policy;
  o.max_producers = 4;
  o.max_consumers = 4;
  return o;
}

class SupervisionTest : public testing::TestBus {
 protected:
  // Polls until Empty (or another status); returns the payloads.
  static std::vector<std::string> drain(Consumer& c, Status* last = nullptr) {
    std::vector<std::string> got;
    PollResult r;
    do {
      r = c.poll([&](const Message& m) { got.emplace_back(text(m.payload)); }, 64);
    } while (r.status == Status::Ok);
    if (last != nullptr) *last = r.status;
    return got;
  }
  // The cursor slot a consumer holds: the only ACTIVE one in these tests.
  static log::CursorSlot* active_cursor(const log::Ring& ring) {
    for (std::uint32_t i = 0; i < ring.max_consumers(); ++i)
      if (log::state_of(atomic(ring.cursor_slot(i).control).load()) == SlotState::Active)
        return &ring.cursor_slot(i);
    return nullptr;
  }
};

// A claim revoked while its producer sleeps: consumers (in place and copying)
// skip it, the late payload stores hurt nobody, and the late commit reports
// Revoked without publishing.
TEST_F(SupervisionTest, HungClaimIsRevokedAndItsLateCommitReportsIt) {
  for (Policy policy : {Policy::Block, Policy::Overwrite}) {
    SCOPED_TRACE(policy == Policy::Block ? "block" : "overwrite");
    const char* topic = policy == Policy::Block ? "b" : "o";
    ASSERT_TRUE(Topic::create(bus, topic, small(policy)));
    auto ring = open_ring(topic);
    ASSERT_TRUE(ring);
    auto c = Consumer::open(bus, topic);
    auto hung = Producer::open(bus, topic);  // slot 0
    auto other = Producer::open(bus, topic);
    ASSERT_TRUE(c && hung && other);
    ASSERT_EQ(hung->offer(bytes("first")), Status::Ok);

    Claim claim;
    ASSERT_EQ(hung->claim(100, claim), Status::Ok);
    std::memset(claim.payload.data(), 'h', 50);  // then it hangs
    ASSERT_EQ(other->offer(bytes("second")), Status::Ok);
    EXPECT_EQ(drain(*c), std::vector<std::string>{"first"});
    EXPECT_EQ(c->position(), claim.position) << "the consumer waits at the open claim";

    ASSERT_TRUE(revoke_claim(*ring, ring->producer_slot(0)));
    EXPECT_FALSE(revoke_claim(*ring, ring->producer_slot(0))) << "revokes once";
    EXPECT_EQ(atomic(ring->frame_at(claim.position)->commit).load(),
              ring->skip_word(claim.position));
    EXPECT_EQ(drain(*c), std::vector<std::string>{"second"});

    // It wakes up: finishes its payload and commits.
    std::memset(claim.payload.data(), 'X', claim.payload.size());
    const std::uint64_t at = claim.position;
    EXPECT_EQ(hung->commit(claim), Status::Revoked);
    EXPECT_EQ(atomic(ring->frame_at(at)->commit).load(), ring->skip_word(at))
        << "a revoked commit publishes nothing";
    EXPECT_EQ(ring->producer_slot(0).claim_floor, log::kNoClaimFloor) << "its claim ended";
    Status last;
    EXPECT_TRUE(drain(*c, &last).empty());
    EXPECT_EQ(last, Status::Empty);
    ASSERT_EQ(hung->offer(bytes("third")), Status::Ok) << "the producer goes on";
    EXPECT_EQ(drain(*c), std::vector<std::string>{"third"});

    // A consumer that copies (older than its join) skips it the same way.
    ConsumerOptions early;
    early.start = ConsumerOptions::Start::Earliest;
    auto e = Consumer::open(bus, topic, early);
    ASSERT_TRUE(e);
    EXPECT_EQ(drain(*e), (std::vector<std::string>{"first", "second", "third"}));
  }
}

// The owner wins the race: a committed or aborted claim cannot be revoked,
// and a revoked one aborts with Revoked.
TEST_F(SupervisionTest, RevocationAndCommitExcludeEachOther) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  Claim a;
  ASSERT_EQ(p->claim(5, a), Status::Ok);
  std::memcpy(a.payload.data(), "kept!", 5);
  ASSERT_EQ(p->commit(a), Status::Ok);
  EXPECT_FALSE(revoke_claim(*ring, ring->producer_slot(0))) << "no claim is open";
  EXPECT_FALSE(ring->revoke(0)) << "a committed frame stays committed";
  EXPECT_EQ(drain(*c), std::vector<std::string>{"kept!"});

  Claim b;
  ASSERT_EQ(p->claim(5, b), Status::Ok);
  ASSERT_TRUE(revoke_claim(*ring, ring->producer_slot(0)));
  EXPECT_EQ(p->abort(b), Status::Revoked);
  Claim d;
  ASSERT_EQ(p->claim(5, d), Status::Ok);
  ASSERT_EQ(p->abort(d), Status::Ok);
  EXPECT_FALSE(ring->revoke(d.position)) << "an aborted frame is not pending";
  ASSERT_EQ(p->offer(bytes("after")), Status::Ok);
  EXPECT_EQ(drain(*c), std::vector<std::string>{"after"});
}

// A revoked producer keeps its claim floor until its commit: other producers
// stop a ring past it (its late stores land in the skipped frame, which
// nobody may reuse before then), and go on after it.
TEST_F(SupervisionTest, RevokedClaimKeepsItsFloorUntilTheProducerReturns) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  auto c = Consumer::open(bus, "t");
  auto hung = Producer::open(bus, "t");
  auto other = Producer::open(bus, "t");
  ASSERT_TRUE(c && hung && other);
  Claim claim;
  ASSERT_EQ(hung->claim(40, claim), Status::Ok);  // one 64-byte frame at 0
  ASSERT_TRUE(revoke_claim(*ring, ring->producer_slot(0)));
  const std::string m(40, 'o');
  std::uint64_t sent = 0, got = 0;
  Status st;
  for (;;) {
    while ((st = other->offer(bytes(m))) == Status::Ok) ++sent;
    ASSERT_EQ(st, Status::Full);
    const std::size_t n = drain(*c).size();
    if (n == 0) break;  // Full although the consumer read everything: the floor
    got += n;
  }
  EXPECT_EQ(got, sent);
  EXPECT_EQ(ring->tail().load(), claim.position + kCap) << "stopped exactly a ring past the claim";
  EXPECT_EQ(hung->commit(claim), Status::Revoked);
  EXPECT_EQ(other->offer(bytes(m)), Status::Ok) << "the floor is gone with the claim";
  EXPECT_EQ(drain(*c).size(), 1u);
}

// Threads race a producer's claim/commit against a supervisor revoking
// continuously: every message a consumer gets is intact and one that the
// producer saw committed, in order, with no duplicate; every revoked one is
// skipped.
TEST_F(SupervisionTest, RevocationRacesCommit) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  // At least this many messages and revocations; every 8th claim yields
  // before its commit, to widen the window on a box with few cores.
  constexpr std::uint64_t kMessages = 20'000, kRevocations = 50;
  std::atomic<bool> done{false};
  std::vector<std::uint64_t> committed;
  std::uint64_t revoked = 0, sent = 0;
  std::thread producer([&] {
    const auto t0 = std::chrono::steady_clock::now();
    for (std::uint64_t seq = 1; (seq <= kMessages || revoked < kRevocations) &&
                                std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20);
         ++seq) {
      const std::size_t n = 8 + seq % 200;
      Claim claim;
      Status s;
      while ((s = p->claim(n, claim)) == Status::Full) std::this_thread::yield();
      ASSERT_EQ(s, Status::Ok);
      std::memcpy(claim.payload.data(), &seq, 8);
      std::memset(claim.payload.data() + 8, static_cast<int>(seq & 0xff), n - 8);
      if (seq % 8 == 0) std::this_thread::yield();
      s = p->commit(claim);
      ++sent;
      ASSERT_TRUE(s == Status::Ok || s == Status::Revoked) << to_string(s);
      if (s == Status::Ok) committed.push_back(seq);
      revoked += s == Status::Revoked;
    }
    done.store(true);
  });
  std::thread supervisor([&] {
    log::ProducerSlot& slot = ring->producer_slot(0);
    std::uint64_t n = 0;
    while (!done.load(std::memory_order_relaxed))
      if (revoke_claim(*ring, slot) || ++n % 64 == 0) std::this_thread::yield();
  });
  std::vector<std::uint64_t> received;
  std::string bad;
  auto check = [&](const Message& m) {
    std::uint64_t seq = 0;
    if (m.payload.size() < 8) {
      bad = "short message";
      return;
    }
    std::memcpy(&seq, m.payload.data(), 8);
    for (std::size_t i = 8; i < m.payload.size(); ++i)
      if (m.payload[i] != static_cast<std::byte>(seq & 0xff))
        bad = "damaged message " + std::to_string(seq);
    if (m.payload.size() != 8 + seq % 200) bad = "wrong length " + std::to_string(seq);
    received.push_back(seq);
  };
  while (!done.load()) {
    PollResult r = c->poll(check, 64);
    ASSERT_TRUE(r.status == Status::Ok || r.status == Status::Empty) << to_string(r.status);
    if (r.count == 0) std::this_thread::yield();
  }
  producer.join();
  supervisor.join();
  while (c->poll(check, 64).status == Status::Ok) {
  }
  EXPECT_EQ(bad, "");
  EXPECT_EQ(received, committed) << "revoked " << revoked;
  EXPECT_EQ(committed.size() + revoked, sent);
  std::printf("revocation race: %zu committed, %llu revoked\n", committed.size(),
              static_cast<unsigned long long>(revoked));
  EXPECT_GT(revoked, 0u) << "the race never happened";
}

// ---------------------------------------------------------------------------
// Eviction.

// An evicted consumer is told at its next poll, before anything is handed
// over; producers move on; rejoin() re-registers at the tail.
TEST_F(SupervisionTest, EvictedConsumerIsToldAndRejoins) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  const std::string m(40, 'e');
  while (p->offer(bytes(m)) == Status::Ok) {
  }
  EXPECT_EQ(c->rejoin().error().code, EINVAL) << "not evicted";
  log::CursorSlot* slot = active_cursor(*ring);
  ASSERT_NE(slot, nullptr);
  ASSERT_TRUE(ring->evict(*slot, atomic(slot->control).load()));
  EXPECT_EQ(log::state_of(atomic(slot->control).load()), SlotState::Evicted);
  EXPECT_EQ(p->offer(bytes(m)), Status::Ok) << "producers ignore an evicted cursor";
  bool called = false;
  PollResult r = c->poll([&](const Message&) { called = true; }, 64);
  EXPECT_EQ(r.status, Status::Evicted);
  EXPECT_EQ(r.count, 0u);
  EXPECT_FALSE(called);
  EXPECT_EQ(c->poll([&](const Message&) { called = true; }, 64).status, Status::Evicted);
  EXPECT_FALSE(c->seek(0));
  // Nobody else may take the evicted slot while its owner lives.
  {
    auto others = std::vector<Result<Consumer>>{};
    for (int i = 0; i < 3; ++i) others.push_back(Consumer::open(bus, "t"));
    for (auto& o : others) ASSERT_TRUE(o);
    EXPECT_FALSE(Consumer::open(bus, "t")) << "all slots but the evicted one are taken";
    EXPECT_EQ(log::state_of(atomic(slot->control).load()), SlotState::Evicted);
  }
  const std::uint64_t tail = ring->tail().load();
  ASSERT_TRUE(c->rejoin());
  EXPECT_EQ(c->lost().from, 0u);
  EXPECT_EQ(c->lost().to, tail);
  EXPECT_EQ(c->position(), tail);
  ASSERT_EQ(p->offer(bytes("new")), Status::Ok);
  EXPECT_EQ(drain(*c), std::vector<std::string>{"new"});
}

// Evicted during a handler: the batch stops there and says so; the rest of
// the batch is not handed over, and the cursor is not written.
TEST_F(SupervisionTest, EvictionDuringAHandlerEndsTheBatch) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  for (const char* s : {"one", "two", "three"}) ASSERT_EQ(p->offer(bytes(s)), Status::Ok);
  log::CursorSlot* slot = active_cursor(*ring);
  ASSERT_NE(slot, nullptr);
  std::vector<std::string> got;
  PollResult r = c->poll(
      [&](const Message& m) {
        got.emplace_back(text(m.payload));
        if (got.size() == 2) {
          ASSERT_TRUE(ring->evict(*slot, atomic(slot->control).load()));
        }
      },
      64);
  EXPECT_EQ(r.status, Status::Evicted);
  EXPECT_EQ(r.count, 2u) << "the last of them is suspect";
  EXPECT_EQ((got), (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(atomic(slot->position).load(), 0u) << "an evicted consumer writes no cursor";

  // Evicted in the handler of a batch's last message: said after the batch.
  ASSERT_TRUE(c->rejoin());
  log::CursorSlot* again = active_cursor(*ring);
  ASSERT_NE(again, nullptr);
  ASSERT_EQ(p->offer(bytes("four")), Status::Ok);
  r = c->poll(
      [&](const Message&) { ASSERT_TRUE(ring->evict(*again, atomic(again->control).load())); }, 64);
  EXPECT_EQ(r.status, Status::Evicted);
  EXPECT_EQ(r.count, 1u);
}

// Evicted, then a producer overwrites the next frame with a PAD of any
// length before the consumer reads it: the consumer does not trust what it
// read in place after its last delivery; it reports Evicted and its loss
// starts right after the last message it delivered.
TEST_F(SupervisionTest, EvictedConsumerTrustsNothingReadAfterItsLastDelivery) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  for (const char* s : {"one", "two"}) ASSERT_EQ(p->offer(bytes(s)), Status::Ok);
  log::CursorSlot* slot = active_cursor(*ring);
  ASSERT_NE(slot, nullptr);
  std::uint64_t after_one = 0;
  PollResult r = c->poll(
      [&](const Message& m) {
        after_one = m.position + ring->alignment();  // "one" fills one aligned frame
        ASSERT_TRUE(ring->evict(*slot, atomic(slot->control).load()));
        ring->write_pad(after_one, 2 * ring->alignment());  // as if overwritten meanwhile
      },
      64);
  EXPECT_EQ(r.status, Status::Evicted);
  EXPECT_EQ(r.count, 1u);
  // Poll again: the pad would move it on; it must stay evicted, at the same place.
  EXPECT_EQ(c->poll([](const Message&) { ADD_FAILURE() << "delivered after eviction"; }).status,
            Status::Evicted);
  EXPECT_EQ(c->position(), after_one);
  ASSERT_TRUE(c->rejoin());
  EXPECT_EQ(c->lost().from, after_one);
}

// Evicted while asleep in poll_wait (futex): told at once, not at the
// deadline, although no producer commits again to wake it. (Where membarrier
// is missing, sleepers wake every millisecond anyway, and this cannot tell.)
TEST_F(SupervisionTest, EvictionWakesAConsumerAsleepInPollWait) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  ConsumerOptions o;
  o.wait = WaitStrategy::Futex;
  auto c = Consumer::open(bus, "t", o);
  ASSERT_TRUE(c);
  log::CursorSlot* slot = active_cursor(*ring);
  ASSERT_NE(slot, nullptr);
  const auto timeout = std::chrono::seconds(60);
  std::chrono::steady_clock::duration took{};
  PollResult r;
  std::thread sleeper([&] {
    const auto t0 = std::chrono::steady_clock::now();
    r = c->poll_wait([](const Message&) { ADD_FAILURE() << "nothing was published"; }, 64, timeout);
    took = std::chrono::steady_clock::now() - t0;
  });
  // Counted among the waiters: about to sleep, or asleep.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (atomic(ring->cursor_header()->waiters).load() == 0 &&
         std::chrono::steady_clock::now() < give_up)
    std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(ring->evict(*slot, atomic(slot->control).load()));
  sleeper.join();
  EXPECT_EQ(r.status, Status::Evicted);
  EXPECT_LT(took, timeout / 2) << "slept to its deadline";
}

// An evicted slot is freed by its owner's destructor, or by the reapers once
// the owner is dead.
TEST_F(SupervisionTest, EvictedSlotIsFreedByItsOwnerOrTheReapers) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  {
    auto c = Consumer::open(bus, "t");
    ASSERT_TRUE(c);
    log::CursorSlot* slot = active_cursor(*ring);
    ASSERT_TRUE(ring->evict(*slot, atomic(slot->control).load()));
  }
  for (std::uint32_t i = 0; i < ring->max_consumers(); ++i)
    EXPECT_EQ(log::state_of(atomic(ring->cursor_slot(i).control).load()), SlotState::Free);

  log::CursorSlot& s = ring->cursor_slot(2);
  atomic(s.stamp).store(log::make_stamp(1, 5));
  atomic(s.control).store(log::make_control(SlotState::Evicted, 5, 0x7ffffff0u));  // no such pid
  EXPECT_EQ(ring->reap_dead_consumers(UINT64_MAX), 1u);
  EXPECT_EQ(log::state_of(atomic(s.control).load()), SlotState::Free);
}

}  // namespace
}  // namespace shmbus
