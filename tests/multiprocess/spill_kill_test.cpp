// shmbusd killed with SIGKILL at random moments while its spiller records a
// durable `block` topic under a steady producer (segment files of 1 MiB,
// so kills land in rolls too), then restarted, round after round. The
// durable watermark must never go backwards across a kill, and at the end
// the segment files must hold every message the producer saw Ok for, once,
// in order, checksummed, with no gap: nothing reported durable is lost,
// nothing is duplicated, the producer never lost a message to a crash.
//
// Rounds: SHMBUS_DAEMON_KILLS (200 by default; sanitizer builds run fewer;
// a soak sets more); once with io_uring, once on the fallback path
// (SHMBUS_SPILL_NO_IO_URING=1: pwrite and fdatasync).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../unit/test_bus.hpp"
#include "log/segment_reader.hpp"
#include "message_check.hpp"
#include "process.hpp"
#include "shmbus/detail/frame.hpp"

namespace shmbus {
namespace {

using namespace std::chrono_literals;
using testing::Child;

std::uint32_t kills() {
  const char* n = std::getenv("SHMBUS_DAEMON_KILLS");
  return n != nullptr ? static_cast<std::uint32_t>(std::stoul(n)) : 200;
}

// The parameter: whether the spiller runs without io_uring (its fallback).
class DaemonKills : public testing::TestBus, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    testing::TestBus::SetUp();
    if (GetParam()) ::setenv("SHMBUS_SPILL_NO_IO_URING", "1", 1);
    char tmpl[] = "/tmp/shmbus-spill-kill-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    data_ = tmpl;
    config_ = data_ + "/shmbusd.toml";
    std::ofstream(config_) << "spill_file_bytes = 1048576\n";
    std::filesystem::create_directories(root_);
    sock_ = root_ + "/bus.sock";
    ::setenv("SHMBUS_SOCKET", sock_.c_str(), 1);
  }
  void TearDown() override {
    if (daemon_) {
      ::kill(daemon_->pid(), SIGTERM);
      EXPECT_EQ(daemon_->wait(30s), 0) << "shmbusd did not stop cleanly";
      daemon_.reset();
    }
    ::unsetenv("SHMBUS_SOCKET");
    ::unsetenv("SHMBUS_SPILL_NO_IO_URING");
    if (!HasFailure()) std::filesystem::remove_all(data_);
    testing::TestBus::TearDown();
  }
  void start_daemon() {
    const char* d = std::getenv("SHMBUSD");
    ASSERT_NE(d, nullptr) << "SHMBUSD names the daemon to test with";
    ::unlink(sock_.c_str());  // a killed daemon leaves its socket behind
    daemon_.emplace(std::vector<std::string>{d, "--foreground", "--bus", bus, "--socket", sock_,
                                             "--config", config_, "--data-dir", data_ + "/data"});
    ASSERT_TRUE(daemon_->started());
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    struct stat st;
    while (::stat(sock_.c_str(), &st) != 0) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "shmbusd opened no socket";
      ASSERT_EQ(daemon_->wait(0ms), -1) << "shmbusd exited at start";
      std::this_thread::sleep_for(2ms);
    }
  }
  PartitionInfo::Spill spill() {
    auto info = Topic::describe(bus, "d");
    EXPECT_TRUE(info) << info.error().message;
    return info ? info->partitions[0].spill : PartitionInfo::Spill{};
  }

  std::string data_, config_, sock_;
  std::optional<Child> daemon_;
};

TEST_P(DaemonKills, NothingReportedDurableIsLostOrDuplicated) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  TopicOptions o;
  o.policy = Policy::Block;
  o.exclusive_producer = true;
  o.segment_bytes = 64 * 1024;  // small: the producer waits for the spiller often
  o.segment_count = 4;
  o.durable = true;
  o.fsync = Fsync::Interval;
  o.fsync_interval_ms = 2;
  ASSERT_TRUE(Topic::create(bus, "d", o));

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> published{0};
  std::string producer_error;
  std::thread producer([&] {
    auto p = Producer::open(bus, "d");
    if (!p) {
      producer_error = p.error().message;
      return;
    }
    std::vector<std::byte> msg;
    std::uint64_t seq = 0;
    while (!stop) {
      // Paced bursts: heavy spilling without writing gigabytes.
      for (int i = 0; i < 64 && !stop; ++i) {
        testing::make_message(0, seq, 200, msg);
        Status s;
        while ((s = p->offer(msg)) == Status::Full && !stop) std::this_thread::yield();
        if (s == Status::Full) break;  // stopped while waiting for room
        if (s != Status::Ok) {
          producer_error = std::string("offer: ") + to_string(s);
          return;
        }
        published = ++seq;
      }
      std::this_thread::sleep_for(300us);
    }
    if (p->wait_durable(60s) != Status::Ok) producer_error = "wait_durable at the end";
  });

  // Kills begin once the producer is attached (its open needs the daemon).
  while (published == 0 && producer_error.empty()) std::this_thread::sleep_for(1ms);
  std::mt19937_64 rng(::getpid());
  std::uint64_t last_durable = 0;
  const std::uint32_t rounds = kills();
  for (std::uint32_t k = 0; k < rounds && producer_error.empty(); ++k) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
    const std::uint64_t before = spill().durable;
    ASSERT_GE(before, last_durable) << "the durable watermark went backwards, kill " << k;
    daemon_->kill9();
    ASSERT_GE(daemon_->wait(10s), 0);
    ASSERT_NO_FATAL_FAILURE(start_daemon());
    // The restarted spiller says durable no lower than before the kill.
    const PartitionInfo::Spill after = spill();
    ASSERT_GE(after.durable, before) << "kill " << k;
    ASSERT_EQ(after.spill_errno, 0) << std::strerror(after.spill_errno);
    last_durable = after.durable;
  }
  stop = true;
  producer.join();
  ASSERT_TRUE(producer_error.empty()) << producer_error;
  ASSERT_GT(published.load(), rounds * 10u) << "the producer hardly published";
  const PartitionInfo::Spill end = spill();
  ::kill(daemon_->pid(), SIGTERM);
  ASSERT_EQ(daemon_->wait(30s), 0);
  daemon_.reset();

  // The files: every message once, in order, checksummed, no gap.
  auto r = log::SegmentReader::open(data_ + "/data/d/0");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->start(), 0u);
  std::uint64_t next_seq = 0, position = 0;
  for (;;) {
    auto b = r->next();
    ASSERT_TRUE(b) << b.error().message;
    if (!*b) break;
    ASSERT_EQ((*b)->kind, log::BatchKind::Frames) << "a gap at " << (*b)->position;
    ASSERT_EQ((*b)->position, position);
    const auto& g = r->geometry();
    for (std::uint64_t p = (*b)->position; p < (*b)->end;) {
      auto* f = const_cast<std::byte*>((*b)->frames.data() + (p - (*b)->position));
      const detail::FrameLook l = detail::look_at_frame<std::memory_order_relaxed>(
          f, p, g.salt, g.ring_segment, g.alignment);
      ASSERT_NE(l.next, 0u);
      if (l.data()) {
        testing::CheckHeader h;
        ASSERT_TRUE(testing::check_message({f + detail::kFrameHeaderBytes, l.length}, h))
            << "damaged message at " << p;
        ASSERT_EQ(h.seq, next_seq) << "at " << p << (h.seq < next_seq ? ": duplicate" : ": lost");
        ++next_seq;
      }
      p = l.next;
    }
    position = (*b)->end;
  }
  EXPECT_EQ(next_seq, published.load()) << "messages in the files vs published Ok";
  EXPECT_GE(position, end.durable);
  std::printf("%u daemon kills, %llu messages, %llu bytes on disk\n", rounds,
              static_cast<unsigned long long>(next_seq), static_cast<unsigned long long>(position));
}

INSTANTIATE_TEST_SUITE_P(Spill, DaemonKills, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "pwrite" : "io_uring"; });

}  // namespace
}  // namespace shmbus
