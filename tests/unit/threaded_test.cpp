// Producers and consumers as threads of one process: the same checks as the
// multi-process stress test, small enough for every build, and visible to
// ThreadSanitizer (which cannot see across processes).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "../multiprocess/message_check.hpp"
#include "test_bus.hpp"

namespace shmbus {
namespace {

using testing::CheckHeader;

class ThreadedTest : public testing::TestBus {
 protected:
  void run(Policy policy, WaitStrategy wait) {
    TopicOptions o;
    o.segment_bytes = 16 * 1024;
    o.segment_count = 2;
    o.policy = policy;
    ASSERT_TRUE(Topic::create(bus, "t", o));
    constexpr std::uint32_t kProducers = 2, kConsumers = 2;
    // Busy-spinning consumers starve producers of a 2-core machine until the
    // scheduler preempts them, so that run is kept short.
    const std::uint64_t kEach = wait == WaitStrategy::BusySpin ? 5'000 : 50'000;
    std::vector<Consumer> consumers;
    for (std::uint32_t i = 0; i < kConsumers; ++i) {
      ConsumerOptions co;
      co.wait = wait;
      auto c = Consumer::open(bus, "t", co);
      ASSERT_TRUE(c) << c.error().message;
      consumers.push_back(std::move(c).value());
    }
    std::atomic<std::uint32_t> producers_done{0};
    std::vector<std::thread> threads;
    for (std::uint32_t id = 0; id < kProducers; ++id)
      threads.emplace_back([&, id, kEach] {
        auto p = Producer::open(bus, "t");
        ASSERT_TRUE(p);
        std::vector<std::byte> msg;
        for (std::uint64_t seq = 0; seq < kEach; ++seq) {
          testing::make_message(id, seq, 100, msg);
          Status s;
          while ((s = p->offer(msg)) == Status::Full) std::this_thread::yield();
          ASSERT_EQ(s, Status::Ok);
        }
        producers_done.fetch_add(1);
      });
    std::vector<std::uint64_t> received(kConsumers), lost(kConsumers);
    for (std::uint32_t k = 0; k < kConsumers; ++k)
      threads.emplace_back([&, k, kEach] {
        std::vector<std::uint64_t> next(kProducers, 0);
        bool gap_allowed = false;
        auto handler = [&](const Message& m) {
          CheckHeader h;
          ASSERT_TRUE(testing::check_message(m.payload, h));
          ASSERT_LT(h.producer, kProducers);
          if (!gap_allowed) {
            ASSERT_EQ(h.seq, next[h.producer]);
          }
          ASSERT_GE(h.seq, next[h.producer]);
          lost[k] += h.seq - next[h.producer];
          next[h.producer] = h.seq + 1;
          ++received[k];
        };
        // Until the producers are done and the ring is drained.
        for (;;) {
          const bool finished = producers_done.load() == kProducers;
          PollResult r = consumers[k].poll_wait(handler, 64, std::chrono::milliseconds(20));
          if (r.status == Status::Lagged) {
            gap_allowed = true;  // overwrite only; counted through the sequence gaps
            continue;
          }
          ASSERT_TRUE(r.status == Status::Ok || r.status == Status::Timeout) << to_string(r.status);
          if (finished && r.status == Status::Timeout) break;
        }
        if (policy == Policy::Block) {
          for (std::uint64_t n : next) EXPECT_EQ(n, kEach);
        }
      });
    for (std::thread& t : threads) t.join();
    for (std::uint32_t k = 0; k < kConsumers; ++k) {
      if (policy == Policy::Block) {
        EXPECT_EQ(received[k], kProducers * kEach);
        EXPECT_EQ(lost[k], 0u);
      } else {
        EXPECT_GT(received[k], 0u);
        EXPECT_LE(received[k] + lost[k], kProducers * kEach);
      }
    }
  }
};

TEST_F(ThreadedTest, BlockBusySpin) {
  run(Policy::Block, WaitStrategy::BusySpin);
}
TEST_F(ThreadedTest, BlockSpinYield) {
  run(Policy::Block, WaitStrategy::SpinYield);
}
TEST_F(ThreadedTest, BlockFutex) {
  run(Policy::Block, WaitStrategy::Futex);
}

TEST_F(ThreadedTest, Overwrite) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "overwrite readers copy bytes that a producer may be overwriting and then "
                  "discard the copy (the seqlock pattern); TSan reports that race by design. "
                  "The multi-process stress test covers this policy.";
#endif
  run(Policy::Overwrite, WaitStrategy::SpinYield);
}

}  // namespace
}  // namespace shmbus
