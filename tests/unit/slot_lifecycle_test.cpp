// Producer and consumer slots across joins, crashes and claims that end in Full.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "log/ring.hpp"
#include "test_bus.hpp"

namespace shmbus {
namespace {

using testing::bytes;

class SlotLifecycleTest : public testing::TestBus {
 protected:
  TopicOptions small(Policy policy) {
    TopicOptions o;
    o.segment_bytes = 4096;
    o.segment_count = 2;
    o.policy = policy;
    return o;
  }
};

// Racing opens of an exclusive topic: exactly one producer wins each round.
TEST_F(SlotLifecycleTest, ExclusiveTopicAdmitsOneProducerUnderRacingOpens) {
  TopicOptions o = small(Policy::Overwrite);
  o.exclusive_producer = true;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  for (int round = 0; round < 200; ++round) {
    std::atomic<int> go{0}, won{0};
    std::vector<std::thread> ts;
    std::vector<std::optional<Producer>> held(4);
    for (int i = 0; i < 4; ++i)
      ts.emplace_back([&, i] {
        while (go.load() == 0) {
        }
        auto p = Producer::open(bus, "t");
        if (p) {
          won.fetch_add(1);
          held[i].emplace(std::move(p).value());
        }
      });
    go.store(1);
    for (auto& t : ts) t.join();
    ASSERT_EQ(won.load(), 1) << "round " << round;
  }
}

// Consumers that die without closing (no destructor runs) give their slots back
// to the next consumer that finds none free.
TEST_F(SlotLifecycleTest, DeadConsumersSlotsAreTakenBack) {
  TopicOptions o = small(Policy::Overwrite);
  o.max_consumers = 2;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  for (int i = 0; i < 2; ++i) {
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      auto c = Consumer::open(bus, "t");
      ::_exit(c ? 0 : 1);  // no destructor: the slot stays taken, as after kill -9
    }
    int st = 0;
    ASSERT_EQ(::waitpid(child, &st, 0), child);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  auto info = Topic::describe(bus, "t");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->partitions[0].consumers, 2u) << "both dead consumers still hold their slots";
  auto a = Consumer::open(bus, "t");
  ASSERT_TRUE(a) << a.error().message;
  auto b = Consumer::open(bus, "t");
  ASSERT_TRUE(b) << b.error().message;
  auto c = Consumer::open(bus, "t");
  ASSERT_FALSE(c) << "two live consumers hold both slots";
  EXPECT_NE(c.error().message.find("live consumers"), std::string::npos) << c.error().message;
}

// A claim that crosses a segment end and then finds the ring full must not
// leave its announcement behind: other producers would stall on it forever.
TEST_F(SlotLifecycleTest, FullAfterACrossingLeavesNoClaimBehind) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto c = Consumer::open(bus, "t");
  auto a = Producer::open(bus, "t");
  auto b = Producer::open(bus, "t");
  ASSERT_TRUE(c && a && b);
  std::string m(1500, 'a');  // 1536-byte frames: the third crosses a segment end
  int sent = 0;
  Status s;
  while ((s = a->offer(bytes(m))) == Status::Ok) ++sent;
  ASSERT_EQ(s, Status::Full);
  ASSERT_GT(sent, 0);
  // The consumer catches up completely; then B must be able to publish.
  int got = 0;
  while (c->poll([&](const Message&) { ++got; }, 100).count > 0) {
  }
  EXPECT_EQ(got, sent);
  EXPECT_EQ(b->offer(bytes("b")), Status::Ok);
  EXPECT_EQ(c->poll([](const Message&) {}, 10).count, 1u);
}

// The same for an exclusive producer: the segment-end pad it claimed before
// finding no room is committed, so no claim stays recorded (shmbusd would
// report an idle producer as hung inside claim()).
TEST_F(SlotLifecycleTest, ExclusiveFullAfterAPadLeavesNoClaimRecorded) {
  TopicOptions o = small(Policy::Block);
  o.exclusive_producer = true;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  auto ring = open_ring();
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(ring && c && p);
  std::string m(1500, 'a');  // 1536-byte frames: pads at 3072 and 7168, then Full
  Status s;
  while ((s = p->offer(bytes(m))) == Status::Ok) {
  }
  ASSERT_EQ(s, Status::Full);
  EXPECT_EQ(log::atomic(ring->producer_slot(0).claim_bytes).load(), 0u);
}

TEST_F(SlotLifecycleTest, HugeClaimsAreTooLargeNotWrapped) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p);
  Claim cl;
  EXPECT_EQ(p->claim(SIZE_MAX, "k", {}, cl), Status::TooLarge);
  EXPECT_EQ(p->claim(SIZE_MAX - 1, cl), Status::TooLarge);
}

TEST_F(SlotLifecycleTest, PollWaitWithTheLongestTimeoutWaits) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto c = Consumer::open(bus, "t");
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(c && p);
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_EQ(p->offer(bytes("x")), Status::Ok);
  });
  PollResult r = c->poll_wait([](const Message&) {}, 1, std::chrono::nanoseconds::max());
  later.join();
  EXPECT_EQ(r.status, Status::Ok);
  EXPECT_EQ(r.count, 1u);
}

// A consumer killed (kill -9) while asleep in poll_wait leaves its count in
// the futex waiters; the reaper takes it back, so producers stop calling
// futex_wake, and leaves a live sleeper's count alone.
TEST_F(SlotLifecycleTest, ConsumerKilledAsleepIsUncountedFromTheWaiters) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto ring = log::Ring::open(dir(), "t", 0, false, false);
  ASSERT_TRUE(ring) << ring.error().message;
  auto waiters = [&] {
    return log::atomic(ring->cursor_header()->waiters).load(std::memory_order_acquire);
  };
  auto sleeper = [&]() -> pid_t {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ConsumerOptions co;
      co.wait = WaitStrategy::Futex;
      auto c = Consumer::open(bus, "t", co);
      if (!c) ::_exit(2);
      for (;;) (void)c->poll_wait([](const Message&) {}, 1, std::chrono::hours(1));
    }
    return pid;
  };
  const pid_t live = sleeper();
  const pid_t doomed = sleeper();
  const auto t0 = std::chrono::steady_clock::now();
  while (waiters() != 2 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(waiters(), 2u) << "both consumers asleep in the futex";
  ::kill(doomed, SIGKILL);
  ASSERT_EQ(::waitpid(doomed, nullptr, 0), doomed);
  EXPECT_EQ(ring->reap_dead_consumers(UINT64_MAX), 1u);
  EXPECT_EQ(waiters(), 1u) << "the dead one's count is taken back, the live one's kept";
  EXPECT_EQ(ring->reap_dead_consumers(UINT64_MAX), 0u);
  EXPECT_EQ(waiters(), 1u);
  ::kill(live, SIGKILL);
  ASSERT_EQ(::waitpid(live, nullptr, 0), live);
  EXPECT_EQ(ring->reap_dead_consumers(UINT64_MAX), 1u);
  EXPECT_EQ(waiters(), 0u);
}

}  // namespace
}  // namespace shmbus
