// The asymmetric fence on the store-buffering litmus test, across two
// processes: each stores its own word, fences, and loads the other's; with a
// fence on both sides at least one of them must see the other's store. The
// light side is a forked child (which registers itself: the process flag is
// reset across fork), the heavy side the parent. The loop catches the reordering:
// with heavy_fence() reduced to a plain fence, neither side saw the other in
// about 1% of the rounds on this workplace's VM (and ~2% with no fences).
#include "shm/asymmetric_fence.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <new>

#include "log/spin.hpp"
#include "test_bus.hpp"

namespace shmbus::shm {
namespace {

constexpr std::uint32_t kRounds = 20'000;

struct alignas(128) Word {
  std::atomic<std::uint32_t> v{0};
};
struct Litmus {
  Word x, y;         // the child's store, the parent's store
  Word round, done;  // the parent starts round i, the child says it finished it
  Word child_registered_at_fork, child_light;
  bool child_saw[kRounds + 1];   // the child's load of y found round i's store
  bool parent_saw[kRounds + 1];  // the parent's load of x found round i's store
};

// Waits for `word` to reach `value`: spins, then yields, so that two processes
// that share one CPU (a loaded machine) hand over in a time slice, not several.
void await(const std::atomic<std::uint32_t>& word, std::uint32_t value) {
  for (std::uint32_t spins = 0; word.load(std::memory_order_acquire) != value; ++spins) {
    if (spins < 1000)
      log::cpu_relax();
    else
      ::sched_yield();
  }
}

// A short, varying wait, so that the two sides' stores overlap in some rounds.
void jitter(std::uint32_t& state, std::uint32_t max_pauses) {
  state = state * 1664525u + 1013904223u;
  for (std::uint32_t k = (state >> 24) % (max_pauses + 1); k > 0; --k) log::cpu_relax();
}

// Runs the litmus test; returns the rounds in which neither side saw the other's store.
std::uint32_t run(Litmus* m) {
  const pid_t child = ::fork();
  if (child == 0) {  // the light side
    m->child_registered_at_fork.v = shm::light_fences.load() ? 1 : 0;
    m->child_light.v = enable_light_fences() ? 1 : 0;
    std::uint32_t rng = 7;
    for (std::uint32_t i = 1; i <= kRounds; ++i) {
      await(m->round.v, i);
      jitter(rng, 4);
      m->x.v.store(i, std::memory_order_relaxed);
      light_fence();
      m->child_saw[i] = m->y.v.load(std::memory_order_relaxed) == i;
      m->done.v.store(i, std::memory_order_release);
    }
    ::_exit(0);
  }
  EXPECT_GT(child, 0);
  if (child < 0) return 0;
  std::uint32_t rng = 11, fence_failures = 0;
  for (std::uint32_t i = 1; i <= kRounds; ++i) {
    m->round.v.store(i, std::memory_order_release);
    jitter(rng, 16);  // the child sees the round a cache-line transfer later
    m->y.v.store(i, std::memory_order_relaxed);
    fence_failures += heavy_fence() ? 0 : 1;
    m->parent_saw[i] = m->x.v.load(std::memory_order_relaxed) == i;
    await(m->done.v, i);
  }
  EXPECT_EQ(fence_failures, 0u) << "membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) failed";
  int status = 0;
  EXPECT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::uint32_t both_missed = 0;
  for (std::uint32_t i = 1; i <= kRounds; ++i) both_missed += !m->child_saw[i] && !m->parent_saw[i];
  return both_missed;
}

class AsymmetricFence : public ::testing::Test {
 protected:
  void SetUp() override {
    void* p =
        ::mmap(nullptr, sizeof(Litmus), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(p, MAP_FAILED);
    m = new (p) Litmus;
  }
  void TearDown() override { ::munmap(m, sizeof(Litmus)); }
  Litmus* m = nullptr;
};

TEST_F(AsymmetricFence, OneSideAlwaysSeesTheOther) {
  if (!enable_light_fences())
    GTEST_SKIP() << "membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) is not available here: "
                    "light fences stay full fences";
  EXPECT_EQ(run(m), 0u) << "rounds in which neither process saw the other's store";
  EXPECT_EQ(m->child_registered_at_fork.v, 0u) << "the flag is reset in a forked child";
  EXPECT_EQ(m->child_light.v, 1u);
}

// ProducerOptions::light_fence decides whether opening a producer registers
// its process (and so exposes it to the heavy fences' interrupts); run in a
// forked child, whose flag starts reset whatever the test process did.
using ProducerFence = testing::TestBus;
TEST_F(ProducerFence, OnlyAProducerThatAsksRegistersItsProcess) {
  ASSERT_TRUE(Topic::create(bus, "t", TopicOptions{}));
  const pid_t child = ::fork();
  if (child == 0) {
    ProducerOptions full;
    full.light_fence = false;
    auto a = Producer::open(bus, "t", full);
    if (!a) ::_exit(3);
    if (shm::light_fences.load()) ::_exit(1);  // registered without asking
    auto b = Producer::open(bus, "t");
    if (!b) ::_exit(3);
    ::_exit(shm::light_fences.load() ? 0 : 2);  // the default did not register
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 2 && !enable_light_fences())
    GTEST_SKIP() << "membarrier registration is not available here";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: registered with light_fence off; 2: not registered by "
                                       "default; 3: could not open a producer";
}

}  // namespace
}  // namespace shmbus::shm
