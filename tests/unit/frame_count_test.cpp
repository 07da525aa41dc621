// log::count_frames, the monitoring walk behind `shmbus stat`'s msgs/s:
// exact over committed frames (Pad frames and keys included), and it stops,
// never strays, at a frame that is not committed or is damaged.
#include <gtest/gtest.h>

#include <string>

#include "log/frame_count.hpp"
#include "log/ring.hpp"
#include "test_bus.hpp"

namespace shmbus {
namespace {

using testing::bytes;

class FrameCountTest : public testing::TestBus {
 protected:
  void SetUp() override {
    testing::TestBus::SetUp();
    TopicOptions o;
    o.segment_bytes = 4096;
    o.segment_count = 4;
    o.policy = Policy::Overwrite;
    ASSERT_TRUE(Topic::create(bus, "t", o));
    auto p = Producer::open(bus, "t");
    ASSERT_TRUE(p) << p.error().message;
    producer_.emplace(std::move(p).value());
    auto r = log::Ring::open(dir(), "t", 0, true, false);
    ASSERT_TRUE(r) << r.error().message;
    ring_.emplace(std::move(r).value());
  }
  std::uint64_t tail() const { return ring_->tail().load(); }

  std::optional<Producer> producer_;
  std::optional<log::Ring> ring_;
};

TEST_F(FrameCountTest, CountsEveryCommittedMessageAcrossPadding) {
  // 100-102 B payloads, every other one with a key: 128 or 192 B frames, so
  // the 40 of them cross segment ends (Pad frames).
  for (int i = 0; i < 40; ++i)
    ASSERT_EQ(producer_->offer(bytes(std::string(100 + i % 3, 'x')), i % 2 ? "key" : ""),
              Status::Ok);
  const log::FrameCount all = log::count_frames(*ring_, 0, tail(), 1000);
  EXPECT_EQ(all.messages, 40u);
  EXPECT_EQ(all.bytes, tail());
  const log::FrameCount capped = log::count_frames(*ring_, 0, tail(), 10);
  EXPECT_EQ(capped.messages, 10u);
  EXPECT_EQ(log::count_frames(*ring_, 0, capped.bytes, 1000).messages, 10u)
      << "the capped walk ends on the boundary after its 10th frame";
}

TEST_F(FrameCountTest, StopsAtAnUncommittedFrame) {
  Claim open;
  for (int i = 0; i < 5; ++i) ASSERT_EQ(producer_->offer(bytes("m")), Status::Ok);
  ASSERT_EQ(producer_->claim(8, open), Status::Ok);
  const std::uint64_t end = tail();
  const log::FrameCount c = log::count_frames(*ring_, 0, end, 1000);
  EXPECT_EQ(c.messages, 5u);
  EXPECT_EQ(c.bytes, open.position);
  ASSERT_EQ(producer_->commit(open), Status::Ok);
  EXPECT_EQ(log::count_frames(*ring_, 0, end, 1000).messages, 6u);
}

TEST_F(FrameCountTest, WalksOverAbortedFramesWithoutCountingThem) {
  Claim aborted;
  ASSERT_EQ(producer_->offer(bytes("a")), Status::Ok);
  ASSERT_EQ(producer_->claim(8, aborted), Status::Ok);
  ASSERT_EQ(producer_->abort(aborted), Status::Ok);
  ASSERT_EQ(producer_->offer(bytes("b")), Status::Ok);
  const log::FrameCount c = log::count_frames(*ring_, 0, tail(), 1000);
  EXPECT_EQ(c.messages, 2u);
  EXPECT_EQ(c.bytes, tail());
}

TEST_F(FrameCountTest, StopsAtADamagedLengthOrAMisalignedStart) {
  for (int i = 0; i < 5; ++i) ASSERT_EQ(producer_->offer(bytes("m")), Status::Ok);
  ring_->frame_at(128)->length = 1u << 30;  // would leave the segment
  EXPECT_EQ(log::count_frames(*ring_, 0, tail(), 1000).messages, 2u);
  EXPECT_EQ(log::count_frames(*ring_, 8, tail(), 1000).messages, 0u);
}

}  // namespace
}  // namespace shmbus
