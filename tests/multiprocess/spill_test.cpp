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
// (SHMBUS_SPILL_NO_IO_URING=1: pwrite and fdatasync). Then replay merge
// under a producer, and a full disk (a tmpfs of the daemon's own).
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
#include "log/ring.hpp"
#include "log/segment_log.hpp"
#include "log/segment_reader.hpp"
#include "message_check.hpp"
#include "process.hpp"
#include "shm/file.hpp"
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
  // `prefix`: what runs shmbusd (a command that execs its arguments).
  void start_daemon(std::vector<std::string> prefix = {}) {
    const char* d = std::getenv("SHMBUSD");
    ASSERT_NE(d, nullptr) << "SHMBUSD names the daemon to test with";
    ::unlink(sock_.c_str());  // a killed daemon leaves its socket behind
    for (std::string a : {std::string(d), std::string("--foreground"), std::string("--bus"),
                          std::string(bus), std::string("--socket"), sock_, std::string("--config"),
                          config_, std::string("--data-dir"), data_ + "/data"})
      prefix.push_back(std::move(a));
    daemon_.emplace(prefix);
    ASSERT_TRUE(daemon_->started());
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    struct stat st;
    while (::stat(sock_.c_str(), &st) != 0) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "shmbusd opened no socket";
      ASSERT_EQ(daemon_->wait(0ms), -1) << "shmbusd exited at start";
      std::this_thread::sleep_for(2ms);
    }
  }
  // Walks the segment files in dir from their start (0) to `below` (or
  // their end): the messages must be seq next_seq, next_seq + 1, ...,
  // checksummed, with no gap; position: where the walk ended.
  void read_files(const std::string& dir, std::uint64_t below, std::uint64_t& next_seq,
                  std::uint64_t& position) {
    auto r = log::SegmentReader::open(dir);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->start(), 0u);
    position = 0;
    while (position < below) {
      auto b = r->next(below == ~std::uint64_t{0} ? 0 : below);
      ASSERT_TRUE(b) << b.error().message;
      if (!*b) break;
      ASSERT_EQ((*b)->kind, log::BatchKind::Frames) << "a gap at " << (*b)->position;
      ASSERT_EQ((*b)->position, position);
      const auto& g = r->geometry();
      std::uint64_t p = (*b)->position;
      while (p < (*b)->end && p < below) {
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
      position = p;
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
  std::uint64_t next_seq = 0, position = 0;
  ASSERT_NO_FATAL_FAILURE(read_files(data_ + "/data/d/0", ~std::uint64_t{0}, next_seq, position));
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

// ConsumerOptions::Start::Time against a brute-force scan, on a durable
// topic (most of it only in the files, the rest in the ring) and on a plain
// one (the ring): the first message delivered is the first in position
// order stamped at or after the time; a time after every stamp starts at
// the tail.
TEST_F(SpillingBus, StartAtATimeFindsTheFirstMessageStampedThenInTheFilesAndTheRing) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  TopicOptions o;
  o.policy = Policy::Block;
  o.segment_bytes = 16 * 1024;
  o.segment_count = 4;
  o.durable = true;
  o.fsync = Fsync::Never;
  ASSERT_TRUE(Topic::create(bus, "d", o));
  o.durable = false;
  o.segment_bytes = 1 << 20;
  ASSERT_TRUE(Topic::create(bus, "plain", o));
  for (const char* topic : {"d", "plain"}) {
    auto p = Producer::open(bus, topic);
    ASSERT_TRUE(p) << p.error().message;
    std::vector<std::byte> msg;
    for (std::uint64_t seq = 0; seq < 3000; ++seq) {
      testing::make_message(0, seq, 150, msg);
      Status st;
      while ((st = p->offer(msg)) == Status::Full) std::this_thread::yield();
      ASSERT_EQ(st, Status::Ok);
      if (seq % 300 == 299) std::this_thread::sleep_for(2ms);  // bursts and gaps
    }
    ASSERT_EQ(std::string(topic) == "d" ? p->wait_durable(30s) : Status::Ok, Status::Ok);
    // Everything, in position order, from the start.
    std::vector<std::pair<std::uint64_t, std::int64_t>> all;
    ConsumerOptions co;
    co.start = ConsumerOptions::Start::Earliest;
    co.gating = false;
    auto c = Consumer::open(bus, topic, co);
    ASSERT_TRUE(c) << c.error().message;
    while (all.size() < 3000) {
      const PollResult r = c->poll_wait(
          [&](const Message& m) {
            all.push_back({m.position, m.timestamp_ns});
          },
          512, 10s);
      ASSERT_EQ(r.status, Status::Ok) << topic << " after " << all.size();
    }
    if (std::string(topic) == "d") {
      auto info = Topic::describe(bus, "d");
      ASSERT_GT(info->partitions[0].oldest, all[100].first) << "the start only in the files";
    }
    std::mt19937_64 rng(4);
    for (int k = 0; k < 60; ++k) {
      const auto& pick = all[rng() % all.size()];
      const std::int64_t t = pick.second - static_cast<std::int64_t>(rng() % 3);
      std::uint64_t expect = 0;
      for (const auto& [pos, ts] : all)
        if (ts >= t) {
          expect = pos;
          break;
        }
      ConsumerOptions at;
      at.start = ConsumerOptions::Start::Time;
      at.time_ns = t;
      at.gating = k % 2 == 0;
      auto tc = Consumer::open(bus, topic, at);
      ASSERT_TRUE(tc) << tc.error().message;
      std::uint64_t first = ~std::uint64_t{0};
      const PollResult r = tc->poll_wait([&](const Message& m) { first = m.position; }, 1, 10s);
      ASSERT_EQ(r.status, Status::Ok) << topic;
      EXPECT_EQ(first, expect) << topic << ": time " << t;
    }
    ConsumerOptions later;
    later.start = ConsumerOptions::Start::Time;
    later.time_ns = all.back().second + 1;
    auto lc = Consumer::open(bus, topic, later);
    ASSERT_TRUE(lc);
    EXPECT_EQ(lc->position(), Topic::describe(bus, topic)->partitions[0].tail) << topic;
  }
}

// Retention removing files under a slow reader: a durable topic keeps 3
// MiB of 1 MiB segment files while ~12 MiB are published. A consumer
// replaying from the start stops in the oldest file until retention has
// removed it and more, then reads on: it reads the file it has open to its
// end, then Lagged over exactly what was removed (from there to the oldest
// position on disk), then everything after it once, in order, checksummed,
// into the live stream. Never Corrupt, never garbage, never a crash. A new
// consumer asking for position 0 gets ERANGE naming the oldest position.
// The parameter: the consumer starts in the files (the ring lapped already)
// with the oldest file open, or in the ring (lapped while it waits, its
// position's file gone by then).
class Retention : public SpillingBus, public ::testing::WithParamInterface<bool> {};

TEST_P(Retention, RemovesFilesUnderASlowReaderWhoIsToldWhatItLost) {
  const bool from_files = GetParam();
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  TopicOptions o;
  o.policy = Policy::Block;
  o.exclusive_producer = true;
  o.segment_bytes = 64 * 1024;
  o.segment_count = 4;
  o.durable = true;
  o.fsync = Fsync::Never;
  o.retention_bytes = 3u << 20;
  ASSERT_TRUE(Topic::create(bus, "d", o));

  constexpr std::uint64_t kMessages = 60'000;  // ~12 MiB of 200-byte frames
  std::atomic<bool> failed{false};
  std::thread producer([&] {
    auto p = Producer::open(bus, "d");
    if (!p) return (void)(failed = true);
    std::vector<std::byte> msg;
    for (std::uint64_t seq = 0; seq < kMessages && !failed; ++seq) {
      testing::make_message(0, seq, 150, msg);
      Status st;
      while ((st = p->offer(msg)) == Status::Full) std::this_thread::yield();
      if (st != Status::Ok) return (void)(failed = true);
    }
  });

  if (from_files)
    while (spill().written < (3u << 19) && !failed) std::this_thread::sleep_for(1ms);
  ConsumerOptions co;
  co.start = ConsumerOptions::Start::Earliest;
  co.gating = false;
  auto c = Consumer::open(bus, "d", co);
  ASSERT_TRUE(c) << c.error().message;
  std::uint64_t next_seq = 0, lagged = 0, lost_bytes = 0;
  std::optional<std::uint64_t> resume_at;  // after a Lagged: where the next message must be
  bool waited = false;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  std::string failure;
  auto check = [&](const Message& m) {
    testing::CheckHeader h;
    if (!testing::check_message(m.payload, h)) {
      failure = "garbage at " + std::to_string(m.position);
    } else if (resume_at) {  // past the lost range: seqs may skip, never repeat
      if (m.position != *resume_at || h.seq < next_seq)
        failure = "after the lost range: seq " + std::to_string(h.seq) + " at " +
                  std::to_string(m.position) + ", expected a seq from " + std::to_string(next_seq) +
                  " at " + std::to_string(*resume_at);
    } else if (h.seq != next_seq) {
      failure = "seq " + std::to_string(h.seq) + " at " + std::to_string(m.position) +
                ", expected " + std::to_string(next_seq);
    }
    resume_at.reset();
    next_seq = h.seq + 1;
  };
  while (next_seq < kMessages && failure.empty()) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "stalled at seq " << next_seq;
    ASSERT_FALSE(failed) << "the producer failed";
    const PollResult r = c->poll_wait(check, waited ? 512 : 1, 10ms);
    if (r.status == Status::Lagged) {
      const LostRange l = c->lost();
      ++lagged;
      lost_bytes += l.to - l.from;
      EXPECT_EQ(c->position(), l.to);
      EXPECT_GT(l.to, l.from);
      EXPECT_EQ(l.to % (1u << 20), 0u) << "resumes at the start of the oldest file on disk";
      resume_at = l.to;
      continue;
    }
    ASSERT_TRUE(r.status == Status::Ok || r.status == Status::Timeout) << to_string(r.status);
    if (!waited && next_seq >= 100) {
      // Stop in the oldest file until retention removed it and two more.
      while (spill().disk_start < (3u << 20)) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "retention removed nothing";
        ASSERT_FALSE(failed);
        std::this_thread::sleep_for(5ms);
      }
      waited = true;
    }
  }
  producer.join();
  ASSERT_TRUE(failure.empty()) << failure;
  EXPECT_EQ(next_seq, kMessages) << "read to the last message";
  // One lost range (the removed files it had not opened), or more when a
  // slow run let retention overtake it again while the producer went on.
  EXPECT_GE(lagged, 1u);
  EXPECT_GE(lost_bytes, 1u << 20);
  // What is left on disk once retention has nothing more to remove (no
  // change for longer than its period), and a consumer asking for what is gone.
  std::vector<std::uint64_t> bases;
  for (auto since = std::chrono::steady_clock::now();
       std::chrono::steady_clock::now() - since < 1500ms;) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "retention never settled";
    auto now = log::list_segments(data_ + "/data/d/0");
    ASSERT_TRUE(now);
    if (*now != bases || spill().disk_start != (now->empty() ? 0 : now->front())) {
      bases = *now;
      since = std::chrono::steady_clock::now();
    }
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(bases.empty());
  // Removed down to 3 MiB, but for the files from the last checkpoint's on,
  // which stay until a checkpoint moves past them (none while no more data
  // comes): on a slow run that is more than the one being written.
  EXPECT_GE(bases.front(), 3u << 20) << "the oldest files went";
  const PartitionInfo::Spill w = spill();
  EXPECT_EQ(bases.front(), w.disk_start);
  ConsumerOptions at0;
  at0.start = ConsumerOptions::Start::Position;
  at0.position = 0;
  auto gone = Consumer::open(bus, "d", at0);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ERANGE) << gone.error().message;
  EXPECT_NE(gone.error().message.find(std::to_string(w.disk_start)), std::string::npos)
      << gone.error().message;
}

// A full disk. shmbusd runs in a mount namespace of its own (unshare(1))
// whose data directory is a 3 MiB tmpfs (so nothing stays mounted whatever
// happens, and the machine's disk never fills). A durable `block` topic is
// published into until the files fill it: the partition's spiller stops
// with ENOSPC, named in describe and in the daemon's log; wait_durable
// says SpillFailed; the producers are held back (Full) instead of losing
// anything; the daemon and its other topics go on. Nothing committed is
// lost: the files hold every message up to `written` and the ring every
// one after it, in order, checksummed, once.
// Both spill paths (io_uring, and its pwrite fallback).
class FullDisk : public DaemonKills {};

TEST_P(FullDisk, HoldsProducersBackAndLosesNothingCommitted) {
  // Runs its arguments in a mount namespace where $0 is a 3 MiB tmpfs.
  const std::vector<std::string> in_small_fs = {
      "/usr/bin/unshare",
      "--mount",
      "--propagation",
      "private",
      "/bin/sh",
      "-c",
      "mkdir -p \"$0\" && mount -t tmpfs -o size=3m,mode=0750 shmbus-full \"$0\" && exec "
      "\"$@\" 2>\"$0/../shmbusd.log\"",
      data_ + "/data"};
  std::vector<std::string> probe = in_small_fs;
  probe.push_back("/bin/true");
  if (Child(probe).wait(30s) != 0)
    GTEST_SKIP() << "cannot mount a tmpfs in a mount namespace of its own here (needs "
                    "CAP_SYS_ADMIN, and no AppArmor or seccomp rule against mount)";
  const std::string log = data_ + "/shmbusd.log";
  ASSERT_NO_FATAL_FAILURE(start_daemon(in_small_fs));
  // The daemon's view of its data directory.
  const std::string files = "/proc/" + std::to_string(daemon_->pid()) + "/root" + data_ + "/data";
  TopicOptions o;
  o.policy = Policy::Block;
  o.exclusive_producer = true;
  o.segment_bytes = 64 * 1024;
  o.segment_count = 4;
  o.durable = true;
  o.fsync_interval_ms = 5;
  ASSERT_TRUE(Topic::create(bus, "d", o));
  ASSERT_TRUE(Topic::create(bus, "other", TopicOptions{}));

  auto p = Producer::open(bus, "d");
  ASSERT_TRUE(p) << p.error().message;
  std::vector<std::byte> msg;
  std::uint64_t published = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  // Until the spiller failed and the ring stays full behind its cursor
  // (writes in flight when it failed may still complete, and move it).
  for (int full_since_failed = -1; full_since_failed < 10;) {
    testing::make_message(0, published, 400, msg);
    const Status s = p->offer(msg);
    if (s == Status::Ok) {
      ++published;
      full_since_failed = std::min(full_since_failed, 0);  // ten Fulls in a row
      continue;
    }
    ASSERT_EQ(s, Status::Full);
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the spiller never failed";
    if (full_since_failed >= 0)
      ++full_since_failed;
    else if (spill().spill_errno != 0)
      full_since_failed = 0;
    std::this_thread::sleep_for(full_since_failed >= 0 ? 10ms : 1ms);
  }
  const PartitionInfo::Spill at = spill();
  ASSERT_EQ(at.spill_errno, ENOSPC) << std::strerror(at.spill_errno);
  EXPECT_GT(at.written, 2u << 20) << "the files filled most of the 3 MiB";
  EXPECT_LE(at.durable, at.written);
  EXPECT_EQ(p->wait_durable(5s), Status::SpillFailed);
  // Still held back, long after.
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(p->offer(msg), Status::Full);
  EXPECT_EQ(spill().written, at.written) << "the watermarks froze";

  // The daemon lives, says why, and serves the other topics.
  ASSERT_EQ(daemon_->wait(0ms), -1) << "shmbusd died";
  std::ifstream in(log);
  const std::string said((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(said.find("No space left on device"), std::string::npos) << said;
  EXPECT_NE(said.find(data_ + "/data/d/0"), std::string::npos) << said;
  {  // shmbus stat says so too
    const char* tool = std::getenv("SHMBUS_TOOL");
    ASSERT_NE(tool, nullptr) << "SHMBUS_TOOL names the shmbus tool to test with";
    const std::string cmd = std::string(tool) + " --bus " + bus + " stat d --once --interval 10ms";
    std::FILE* out = ::popen(cmd.c_str(), "r");
    ASSERT_NE(out, nullptr);
    std::string table;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, out)) table.append(buf, n);
    EXPECT_EQ(::pclose(out), 0) << cmd;
    EXPECT_NE(table.find("spill FAILED: No space left on device"), std::string::npos) << table;
    EXPECT_NE(table.find("producers are held back"), std::string::npos) << table;
  }
  {
    auto op = Producer::open(bus, "other");
    ASSERT_TRUE(op) << op.error().message;
    ConsumerOptions co;
    co.start = ConsumerOptions::Start::Earliest;
    auto oc = Consumer::open(bus, "other", co);
    ASSERT_TRUE(oc) << oc.error().message;
    for (int i = 0; i < 100; ++i) ASSERT_EQ(op->offer(testing::bytes("x")), Status::Ok);
    int got = 0;
    while (got < 100) {
      const PollResult r = oc->poll_wait([&](const Message&) { ++got; }, 64, 10s);
      ASSERT_EQ(r.status, Status::Ok);
    }
  }

  // Nothing committed is lost: the files hold it to `written`, and the
  // ring, which the spiller's cursor still guards, every frame after it.
  // (A new consumer reads the ring from its oldest intact segment start
  // only, which may lie past `written`: what lies between waits there for
  // the spiller, after a restart with room on the disk.)
  std::uint64_t next_seq = 0, position = 0;
  ASSERT_NO_FATAL_FAILURE(read_files(files + "/d/0", at.written, next_seq, position));
  ASSERT_EQ(position, at.written);
  auto ring = log::Ring::open_observer(shm::bus_directory(bus), "d", 0);
  ASSERT_TRUE(ring) << ring.error().message;
  const std::uint64_t tail = ring->tail().load(std::memory_order_acquire);
  ASSERT_LE(tail - at.written, ring->capacity());
  for (std::uint64_t q = at.written; q < tail;) {
    const detail::FrameLook l = ring->look(q);
    ASSERT_NE(l.next, 0u) << "no settled frame at " << q;
    if (l.data()) {
      testing::CheckHeader h;
      ASSERT_TRUE(testing::check_message(
          {reinterpret_cast<const std::byte*>(ring->frame_at(q)) + detail::kFrameHeaderBytes,
           l.length},
          h))
          << "damaged message at " << q;
      ASSERT_EQ(h.seq, next_seq) << "at " << q;
      ++next_seq;
    }
    q = l.next;
  }
  EXPECT_EQ(next_seq, published) << "every message the producer saw Ok for";
  EXPECT_EQ(ring->tail().load(), tail) << "nobody wrote past the spiller's cursor";
  std::printf("disk full after %llu messages: %llu bytes in the files, %llu in the ring\n",
              static_cast<unsigned long long>(published),
              static_cast<unsigned long long>(at.written),
              static_cast<unsigned long long>(tail - at.written));
}

INSTANTIATE_TEST_SUITE_P(Spill, DaemonKills, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "pwrite" : "io_uring"; });
INSTANTIATE_TEST_SUITE_P(Spill, Retention, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "from_files" : "from_ring"; });
INSTANTIATE_TEST_SUITE_P(Spill, FullDisk, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "pwrite" : "io_uring"; });

}  // namespace
}  // namespace shmbus
