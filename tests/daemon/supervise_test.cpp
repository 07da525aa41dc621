// The daemon's Supervisor (daemon/supervise.hpp) on a fake clock, against
// slots set by hand: when a claim or a cursor counts as hung or slow.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "log/layout.hpp"
#include "log/ring.hpp"
#include "shm/file.hpp"
#include "shm/process.hpp"
#include "supervise.hpp"
#include "unit/test_bus.hpp"

namespace shmbus::daemon {
namespace {

using log::atomic;
using log::SlotState;
using namespace std::chrono_literals;

class SupervisorTest : public shmbus::testing::TestBus {
 protected:
  void SetUp() override {
    TestBus::SetUp();
    options_.segment_bytes = 4096;
    options_.segment_count = 4;
    options_.policy = Policy::Block;
    options_.hung_producer_timeout_ms = 100;
    options_.slow_consumer_timeout_ms = 100;
    ASSERT_TRUE(shmbus::Topic::create(bus, "t", options_));
    auto r = log::Ring::open(shm::bus_directory(bus), "t", 0, /*writable_log=*/true, false);
    ASSERT_TRUE(r) << r.error().message;
    rings_.push_back(std::move(r).value());
  }
  log::Ring& ring() { return rings_[0]; }
  Supervisor::Actions scan(Supervisor::Clock::duration at) {
    return supervisor_.scan("t", options_, rings_, t0_ + at);
  }
  // A live producer (this process) in slot 0 whose claim record is at 0:
  // `bytes` long, or by its position alone (0: an exclusive ring's offer).
  log::ProducerSlot& live_producer(std::uint64_t bytes) {
    log::ProducerSlot& s = ring().producer_slot(0);
    const shm::ProcessId me = shm::self();
    s.stamp = log::make_stamp(me.start_time, 1);
    s.claim_position = 0;
    s.claim_bytes = bytes;
    s.claim_floor = bytes != 0 ? 0 | 1 : log::kNoClaimFloor;
    atomic(s.control).store(log::make_control(SlotState::Active, 1, me.pid));
    return s;
  }
  // A live producer with an open claim of 64 bytes at 0.
  void open_claim() { live_producer(64); }
  // A live consumer (this process) whose cursor is at 0, a ring behind the tail.
  void stuck_cursor() {
    log::CursorSlot& s = ring().cursor_slot(0);
    const shm::ProcessId me = shm::self();
    s.stamp = log::make_stamp(me.start_time, 1);
    s.position = 0;
    atomic(s.control).store(log::make_control(SlotState::Active, 1, me.pid));
    ring().tail().store(ring().capacity());
  }

  TopicOptions options_;
  std::vector<log::Ring> rings_;
  Supervisor supervisor_;
  Supervisor::Clock::time_point t0_ = Supervisor::Clock::now();
};

// A producer inside claim() that has not handed its frame out (it waited for
// room) is not revoked; once it hands the frame out, the timeout starts
// again, and a frame still pending when it expires is revoked, once.
TEST_F(SupervisorTest, ClaimTimeoutRunsFromTheFramesHandOut) {
  open_claim();
  EXPECT_EQ(scan(0ms).revoked, 0u);
  EXPECT_EQ(scan(250ms).revoked, 0u) << "nothing handed out: nothing to revoke";
  ring().hand_out(ring().frame_at(0), 0);
  EXPECT_EQ(scan(251ms).revoked, 0u) << "just handed out: not hung";
  EXPECT_EQ(scan(300ms).revoked, 0u);
  EXPECT_EQ(scan(352ms).revoked, 1u);
  EXPECT_EQ(atomic(ring().frame_at(0)->commit).load(), ring().skip_word(0));
  EXPECT_EQ(scan(500ms).revoked, 0u) << "once";
}

// An exclusive ring's offer records only its position; a producer stopped
// between its tail store and its commit is still seen inside its claim
// (reported once, nothing to revoke), and a committed offer is not.
TEST_F(SupervisorTest, ExclusiveOfferStoppedBeforeItsCommitIsReported) {
  TopicOptions o = options_;
  o.exclusive_producer = true;
  ASSERT_TRUE(shmbus::Topic::create(bus, "x", o));
  auto r = log::Ring::open(shm::bus_directory(bus), "x", 0, /*writable_log=*/true, false);
  ASSERT_TRUE(r) << r.error().message;
  rings_[0] = std::move(r).value();
  options_ = o;
  log::ProducerSlot& s = live_producer(0);
  ring().write_pad(0, 64);  // a settled frame at 0 and the tail at 64: no open claim
  ring().tail().store(64);
  EXPECT_EQ(scan(0ms).stalled, 0u);
  EXPECT_EQ(scan(150ms).stalled, 0u) << "its last offer is committed";
  s.claim_position = 64;  // offering at 64: the tail moved, nothing committed
  ring().tail().store(128);
  EXPECT_EQ(scan(200ms).stalled, 0u);
  EXPECT_EQ(scan(350ms).stalled, 1u);
  EXPECT_EQ(scan(500ms).stalled, 0u) << "once";
  EXPECT_EQ(scan(500ms).revoked, 0u) << "an offer hands nothing out";
}

// A claim handed out and committed before the timeout is left alone.
TEST_F(SupervisorTest, ClaimCommittedInTimeIsLeftAlone) {
  open_claim();
  ring().hand_out(ring().frame_at(0), 0);
  EXPECT_EQ(scan(0ms).revoked, 0u);
  ASSERT_TRUE(ring().settle(ring().frame_at(0), 0, ring().commit_word(0)));
  EXPECT_EQ(scan(150ms).revoked, 0u);
  EXPECT_EQ(atomic(ring().frame_at(0)->commit).load(), ring().commit_word(0));
}

// A consumer that waits at a frame nobody committed (a hung producer's) is
// not slow; once the frame is readable and it still does not move, it is.
TEST_F(SupervisorTest, ConsumerWaitingAtAnUncommittedFrameIsNotEvicted) {
  stuck_cursor();
  ring().hand_out(ring().frame_at(0), 0);
  EXPECT_EQ(scan(0ms).evicted, 0u);
  EXPECT_EQ(scan(250ms).evicted, 0u) << "it waits for a producer";
  ASSERT_TRUE(ring().settle(ring().frame_at(0), 0, ring().commit_word(0)));
  EXPECT_EQ(scan(251ms).evicted, 0u) << "readable just now";
  EXPECT_EQ(scan(352ms).evicted, 1u);
  EXPECT_EQ(log::state_of(atomic(ring().cursor_slot(0).control).load()), SlotState::Evicted);
}

}  // namespace
}  // namespace shmbus::daemon
