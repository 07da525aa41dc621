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
#include <mutex>
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

// A bus with a real shmbusd that spills into a data directory of its own.
class SpillingBus : public testing::TestBus {
 protected:
  void SetUp() override {
    testing::TestBus::SetUp();
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
    std::filesystem::remove_all(data_);
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

// The parameter: whether the spiller runs without io_uring (its fallback).
class DaemonKills : public SpillingBus, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) ::setenv("SHMBUS_SPILL_NO_IO_URING", "1", 1);
    SpillingBus::SetUp();
  }
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
  std::string producer_error;  // read after the producer joined, or once failed is set
  std::atomic<bool> failed{false};
  std::thread producer([&] {
    auto p = Producer::open(bus, "d");
    if (!p) {
      producer_error = p.error().message;
      failed = true;
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
          failed = true;
          return;
        }
        published = ++seq;
      }
      std::this_thread::sleep_for(300us);
    }
    if (p->wait_durable(60s) != Status::Ok) producer_error = "wait_durable at the end";
    failed = !producer_error.empty();
  });

  // Kills begin once the producer is attached (its open needs the daemon).
  while (published == 0 && !failed) std::this_thread::sleep_for(1ms);
  std::mt19937_64 rng(::getpid());
  std::uint64_t last_durable = 0;
  const std::uint32_t rounds = kills();
  for (std::uint32_t k = 0; k < rounds && !failed; ++k) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
    const std::uint64_t before = spill().durable;
    ASSERT_GE(before, last_durable) << "the durable watermark went backwards, kill " << k;
    daemon_->kill9();
    ASSERT_GE(daemon_->wait(10s), 0);
    ASSERT_NO_FATAL_FAILURE(start_daemon());
    // The restarted spiller (once it holds its cursor again) says durable
    // no lower than before the kill.
    const auto held_by_new = [&] {
      auto info = Topic::describe(bus, "d");
      if (!info) return false;
      const PartitionInfo& pi = info->partitions[0];
      for (std::size_t i = 0; i < pi.consumer_names.size(); ++i)
        if (pi.consumer_names[i] == "shmbus.spill")
          return pi.consumer_pids[i] == static_cast<std::uint32_t>(daemon_->pid());
      return false;
    };
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!held_by_new()) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the spiller did not come back";
      std::this_thread::sleep_for(1ms);
    }
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

std::uint32_t handoffs() {
  const char* n = std::getenv("SHMBUS_REPLAY_HANDOFFS");
  return n != nullptr ? static_cast<std::uint32_t>(std::stoul(n)) : 1000;
}

// Replay merge: consumers opened at random positions far older than the
// ring (a 64 KiB ring, the files holding megabytes) while a producer keeps
// publishing bursts larger than the ring, read from the files and hand over
// to the live ring. Each must deliver first exactly the message asked for,
// then every later one once, in order, into the live stream. A recording
// consumer pauses at random (a consumer stopped and resumed), so the
// producer waits for it and the replays meet a ring in every state.
TEST_F(SpillingBus, ReplayMergeHandsOverToTheRingWithNoGapAndNoDuplicate) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  TopicOptions o;
  o.policy = Policy::Block;
  o.exclusive_producer = true;
  o.segment_bytes = 16 * 1024;
  o.segment_count = 4;
  o.durable = true;
  o.fsync = Fsync::Never;
  ASSERT_TRUE(Topic::create(bus, "r", o));

  constexpr std::uint64_t kMaxMessages = 1'000'000;    // about 190 MB in the files at most
  std::vector<std::uint64_t> positions(kMaxMessages);  // of seq, as the recorder saw it
  std::atomic<std::uint64_t> known{0};                 // positions[0, known) are filled in
  std::atomic<bool> stop{false};
  std::string failure;
  std::mutex failure_lock;
  auto fail = [&](const std::string& why) {
    std::lock_guard lock(failure_lock);
    if (failure.empty()) failure = why;
    stop = true;
  };
  std::thread producer([&] {
    auto p = Producer::open(bus, "r");
    if (!p) return fail(p.error().message);
    std::mt19937_64 rng(1);
    std::vector<std::byte> msg;
    for (std::uint64_t seq = 0; seq < kMaxMessages && !stop;) {
      const std::uint64_t burst = 1 + rng() % 800;  // up to ~2.5 rings of messages
      for (std::uint64_t i = 0; i < burst && seq < kMaxMessages && !stop; ++i) {
        testing::make_message(0, seq, 150, msg);
        Status s;
        while ((s = p->offer(msg)) == Status::Full && !stop) std::this_thread::yield();
        if (s == Status::Full) return;
        if (s != Status::Ok) return fail(std::string("offer: ") + to_string(s));
        ++seq;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(1000 + rng() % 4000));
    }
  });
  std::thread recorder([&] {
    ConsumerOptions earliest;
    earliest.start = ConsumerOptions::Start::Earliest;
    auto c = Consumer::open(bus, "r", earliest);
    if (!c) return fail(c.error().message);
    std::mt19937_64 rng(2);
    std::uint64_t next = 0;
    while (!stop) {
      const PollResult r = c->poll_wait(
          [&](const Message& m) {
            testing::CheckHeader h;
            if (!testing::check_message(m.payload, h) || h.seq != next)
              return fail("recorder: message " + std::to_string(h.seq) + " at " +
                          std::to_string(m.position) + ", expected " + std::to_string(next));
            positions[next] = m.position;
            known.store(++next, std::memory_order_release);
          },
          256, 10ms);
      if (r.status != Status::Ok && r.status != Status::Timeout)
        return fail(std::string("recorder: ") + to_string(r.status));
      if (rng() % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 5000));
    }
  });

  std::mt19937_64 rng(3);
  const std::uint32_t rounds = handoffs();
  std::uint64_t from_disk = 0;
  for (std::uint32_t k = 0; k < rounds && !stop; ++k) {
    while (known.load(std::memory_order_acquire) < 4000 && !stop) std::this_thread::sleep_for(1ms);
    const std::uint64_t seen = known.load(std::memory_order_acquire);
    const std::uint64_t s = seen - 1 - rng() % std::min<std::uint64_t>(seen, 3000);
    // Read on past the stream as it was: into the ring.
    const std::uint64_t live = std::min(seen + 50, kMaxMessages);
    ConsumerOptions co;
    co.start = ConsumerOptions::Start::Position;
    co.position = positions[s];
    co.gating = rng() % 2 == 0;  // observers replay too
    auto c = Consumer::open(bus, "r", co);
    if (!c) {
      fail("open at " + std::to_string(positions[s]) + ": " + c.error().message);
      break;
    }
    auto ring = Topic::describe(bus, "r");
    if (ring && positions[s] < ring->partitions[0].oldest) ++from_disk;
    std::uint64_t expect = s;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (expect < live && !stop) {
      const PollResult r = c->poll_wait(
          [&](const Message& m) {
            testing::CheckHeader h;
            if (!testing::check_message(m.payload, h))
              return fail("damaged message at " + std::to_string(m.position));
            if (h.seq != expect)
              return fail("replay from seq " + std::to_string(s) + ": got " +
                          std::to_string(h.seq) + " at " + std::to_string(m.position) +
                          ", expected " + std::to_string(expect));
            ++expect;
          },
          512, 10ms);
      if (r.status != Status::Ok && r.status != Status::Timeout)
        fail("replay from seq " + std::to_string(s) + ": " + to_string(r.status) + " at " +
             std::to_string(c->position()));
      if (std::chrono::steady_clock::now() > deadline) {
        std::string state;
        if (auto d = Topic::describe(bus, "r")) {
          const PartitionInfo& pi = d->partitions[0];
          state = "; tail " + std::to_string(pi.tail) + ", ring from " + std::to_string(pi.oldest) +
                  ", spill written " + std::to_string(pi.spill.written) + ", cursors";
          for (std::uint64_t x : pi.consumer_positions) state += " " + std::to_string(x);
        }
        fail("replay from seq " + std::to_string(s) + " (" + (co.gating ? "gating" : "observer") +
             ") stalled at seq " + std::to_string(expect) + ", position " +
             std::to_string(c->position()) + state);
      }
      if (rng() % 128 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    }
  }
  stop = true;
  producer.join();
  recorder.join();
  ASSERT_TRUE(failure.empty()) << failure;
  EXPECT_GT(from_disk, rounds / 2) << "most replays must start in the files, not the ring";
  std::printf("%u replay hand-offs, %llu starting on disk, %llu messages published\n", rounds,
              static_cast<unsigned long long>(from_disk),
              static_cast<unsigned long long>(known.load()));
}

INSTANTIATE_TEST_SUITE_P(Spill, DaemonKills, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "pwrite" : "io_uring"; });

}  // namespace
}  // namespace shmbus
