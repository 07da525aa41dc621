// Multi-process tests: real producer and consumer processes (fork+exec of
// shmbus-test-worker) on one partition, every message checked by every
// consumer; and a consumer killed with SIGKILL in the middle of polling.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "../unit/test_bus.hpp"
#include "message_check.hpp"
#include "process.hpp"

namespace shmbus {
namespace {

using namespace std::chrono_literals;
using testing::Child;

std::string worker() {
  const char* w = std::getenv("SHMBUS_TEST_WORKER");
  return w != nullptr ? w : "tests/shmbus-test-worker";
}

// 10 million by default; sanitizer builds set a smaller SHMBUS_STRESS_MESSAGES.
std::uint64_t total_messages() {
  const char* n = std::getenv("SHMBUS_STRESS_MESSAGES");
  return n != nullptr ? std::stoull(n) : 10'000'000;
}

class MultiProcess : public testing::TestBus {
 protected:
  // Starts `consumers` consumer processes and waits until all have joined.
  std::vector<Child> start_consumers(const char* topic, int consumers, int producers,
                                     std::uint64_t each, int timeout_s) {
    std::vector<Child> cs;
    for (int i = 0; i < consumers; ++i) {
      cs.emplace_back(std::vector<std::string>{worker(), "consume", bus, topic,
                                               std::to_string(producers), std::to_string(each),
                                               std::to_string(timeout_s)});
      EXPECT_TRUE(cs.back().started());
    }
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {
      auto info = Topic::describe(bus, topic);
      if (info && info->partitions[0].consumers == static_cast<std::uint32_t>(consumers)) break;
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "consumers did not join";
        break;
      }
      std::this_thread::sleep_for(2ms);
    }
    return cs;
  }

  // After the producers: the end marker that stops the consumers.
  void publish_end(const char* topic) {
    Child end({worker(), "end", bus, topic});
    EXPECT_EQ(end.wait(60s), 0);
  }

  std::vector<Child> start_producers(const char* topic, int producers, std::uint64_t each,
                                     std::uint32_t max_body) {
    std::vector<Child> ps;
    for (int i = 0; i < producers; ++i) {
      ps.emplace_back(std::vector<std::string>{worker(), "produce", bus, topic, std::to_string(i),
                                               std::to_string(each), std::to_string(max_body)});
      EXPECT_TRUE(ps.back().started());
    }
    return ps;
  }

  void run_stress(Policy policy) {
    TopicOptions o;
    o.segment_bytes = 64 * 1024;
    o.segment_count = 4;
    o.policy = policy;
    ASSERT_TRUE(Topic::create(bus, "stress", o));
    constexpr int kProducers = 4, kConsumers = 3;
    const std::uint64_t each = total_messages() / kProducers;
    auto cs = start_consumers("stress", kConsumers, kProducers, each, 500);
    auto ps = start_producers("stress", kProducers, each, 200);
    for (Child& p : ps) EXPECT_EQ(p.wait(550s), 0) << "producer " << p.pid();
    publish_end("stress");
    for (Child& c : cs) EXPECT_EQ(c.wait(550s), 0) << "consumer " << c.pid();
  }
};

TEST_F(MultiProcess, FourProducersThreeConsumersBlock) {
  run_stress(Policy::Block);
}

TEST_F(MultiProcess, FourProducersThreeConsumersOverwrite) {
  run_stress(Policy::Overwrite);
}

TEST_F(MultiProcess, KilledConsumerStallsNobody) {
  TopicOptions o;
  o.segment_bytes = 16 * 1024;
  o.segment_count = 2;
  o.policy = Policy::Block;  // the dead consumer's cursor would stall producers forever
  ASSERT_TRUE(Topic::create(bus, "crash", o));
  constexpr int kProducers = 2;
  const std::uint64_t each = 200'000;
  auto cs = start_consumers("crash", 3, kProducers, each, 300);
  auto ps = start_producers("crash", kProducers, each, 64);
  // Kill one consumer while it is polling: once every cursor has moved.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    auto info = Topic::describe(bus, "crash");
    ASSERT_TRUE(info);
    bool all_moved = true;
    for (std::uint64_t pos : info->partitions[0].consumer_positions) all_moved &= pos > 65536;
    if (all_moved) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "consumers made no progress";
    std::this_thread::sleep_for(1ms);
  }
  cs[1].kill9();
  EXPECT_EQ(cs[1].wait(10s), 128 + SIGKILL);
  for (Child& p : ps) EXPECT_EQ(p.wait(300s), 0) << "a producer stalled behind the dead consumer";
  publish_end("crash");
  EXPECT_EQ(cs[0].wait(300s), 0);
  EXPECT_EQ(cs[2].wait(300s), 0);
  auto info = Topic::describe(bus, "crash");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->partitions[0].consumers, 0u) << "the dead consumer's slot was freed";
}

// An exclusive producer killed with SIGKILL at random moments of its offer
// loop, again and again: each next producer's open reaps the dead one (and
// pads a frame it was killed inside of), and a consumer running throughout
// gets every committed message of every producer, in order, intact, with no
// hole left to stall it.
TEST_F(MultiProcess, KilledExclusiveProducersLeaveNoHole) {
  TopicOptions o;
  o.segment_bytes = 16 * 1024;
  o.segment_count = 4;
  o.exclusive_producer = true;
  ASSERT_TRUE(Topic::create(bus, "x", o));
  auto consumer = Consumer::open(bus, "x");
  ASSERT_TRUE(consumer);
  constexpr std::uint32_t kKilled = 50;  // producers 0..49 killed, 50 runs to its end
  constexpr std::uint64_t kLast = 2000;  // messages of the last producer
  std::vector<std::uint64_t> next(kKilled + 1, 0);
  std::atomic<bool> failed{false};
  std::atomic<bool> stop{false};
  std::atomic<bool> last_done{false};  // the reader got all of the last producer's
  std::thread reader([&] {
    auto check = [&](const Message& m) {
      testing::CheckHeader h;
      if (!testing::check_message(m.payload, h) || h.producer > kKilled ||
          h.seq != next[h.producer]) {
        ADD_FAILURE() << "message at " << m.position << " damaged or out of order";
        failed = true;
        return;
      }
      if (++next[h.producer] == kLast && h.producer == kKilled) last_done = true;
    };
    while (!stop && !failed && !last_done) {
      const PollResult r = consumer->poll_wait(check, 256, 20ms);
      if (r.status != Status::Ok && r.status != Status::Timeout) {
        ADD_FAILURE() << "poll: " << to_string(r.status);
        failed = true;
      }
    }
  });
  // Stops and joins the reader on every way out, a failed ASSERT included.
  struct StopReader {
    std::atomic<bool>& stop;
    std::thread& reader;
    ~StopReader() {
      stop = true;
      if (reader.joinable()) reader.join();
    }
  } stop_reader{stop, reader};
  std::uint32_t seed = 1;
  for (std::uint32_t id = 0; id < kKilled && !failed; ++id) {
    Child p({worker(), "produce", bus, "x", std::to_string(id), "1000000000", "16"});
    ASSERT_TRUE(p.started());
    // Killed 0-3 ms after its first message, somewhere in its offer loop.
    const std::uint64_t tail_before = Topic::describe(bus, "x")->partitions[0].tail;
    const auto started = std::chrono::steady_clock::now();
    while (Topic::describe(bus, "x")->partitions[0].tail == tail_before) {
      ASSERT_LT(std::chrono::steady_clock::now() - started, 30s)
          << "producer " << id << " published nothing (the ring full behind a hole?)";
      std::this_thread::sleep_for(100us);
    }
    seed = seed * 1103515245u + 12345u;
    std::this_thread::sleep_for(std::chrono::microseconds((seed >> 16) % 3000));
    p.kill9();
    EXPECT_EQ(p.wait(10s), 128 + SIGKILL);
  }
  Child last({worker(), "produce", bus, "x", std::to_string(kKilled), std::to_string(kLast), "16"});
  ASSERT_TRUE(last.started());
  EXPECT_EQ(last.wait(60s), 0) << "the last producer could not open the topic or publish";
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!last_done && !failed && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  stop = true;
  reader.join();  // before reading its counts
  EXPECT_EQ(next[kKilled], kLast) << "the consumer stalled (a hole no reaper padded?)";
}

// Two processes that both sleep on the futex between round trips, publishing
// at moments spread over the other side's falling asleep: every publish wakes
// its sleeper (producers publish with a light fence, sleepers pay a heavy one:
// shm/asymmetric_fence.hpp).
// Shared topics (a producer's offer in the library) and exclusive ones (its
// common case inline in the application, shmbus/detail/offer_exclusive.hpp).
class FutexSleepers : public MultiProcess, public ::testing::WithParamInterface<bool> {};
INSTANTIATE_TEST_SUITE_P(, FutexSleepers, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& kind) {
                           return kind.param ? "Exclusive" : "Shared";
                         });

TEST_P(FutexSleepers, AreWoken) {
  TopicOptions o;
  o.segment_bytes = 16 * 1024;
  o.segment_count = 2;
  o.exclusive_producer = GetParam();
  ASSERT_TRUE(Topic::create(bus, "ping", o));
  ASSERT_TRUE(Topic::create(bus, "pong", o));
  const std::string round_trips = "10000";
  Child echo({worker(), "echo", bus, round_trips});
  ASSERT_TRUE(echo.started());
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {  // the echo must be reading "ping" before the first ping
    auto info = Topic::describe(bus, "ping");
    if (info && info->partitions[0].consumers == 1) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the echo did not join";
    std::this_thread::sleep_for(2ms);
  }
  Child ping({worker(), "ping", bus, round_trips});
  ASSERT_TRUE(ping.started());
  EXPECT_EQ(ping.wait(300s), 0);
  EXPECT_EQ(echo.wait(300s), 0);
}

}  // namespace
}  // namespace shmbus
