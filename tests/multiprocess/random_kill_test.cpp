// Producers killed with SIGKILL at uniformly random moments while they
// publish (not at test hooks), round after round, on shared (fetch_add) and
// exclusive topics, under `block` and `overwrite`, with and without shmbusd.
// After every round a fresh producer publishes a marker, which must reach
// every consumer within 1 s (no hole left by a dead producer stalls them);
// at the end every message a producer saw Ok for was received by every
// consumer exactly once, in order per producer, checksummed (at most one more
// per producer: a message committed just before the kill, before its Ok).
//
// Rounds: SHMBUS_KILL_ROUNDS (1000 kills per case by default; sanitizer
// builds run fewer; a soak sets more).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
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

constexpr std::uint32_t kMarker = 0xfffffffe;  // the producer id of markers

std::string worker() {
  const char* w = std::getenv("SHMBUS_TEST_WORKER");
  return w != nullptr ? w : "tests/shmbus-test-worker";
}
std::uint32_t kills_per_case() {
  const char* n = std::getenv("SHMBUS_KILL_ROUNDS");
  return n != nullptr ? static_cast<std::uint32_t>(std::stoul(n)) : 1000;
}

struct KillCase {
  Policy policy;
  bool exclusive;
  bool daemon;
};

// One consumer thread: checks every message, counts per producer, and
// remembers the last marker it saw.
class CheckingReader {
 public:
  CheckingReader(Consumer c, std::uint32_t producers)
      : consumer_(std::move(c)), next_(producers, 0), thread_([this] { run(); }) {}
  ~CheckingReader() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::int64_t last_marker() const { return last_marker_.load(); }
  bool failed() const { return failed_.load(); }
  const std::string& failure() const { return failure_; }  // after stop()
  std::uint64_t received(std::uint32_t producer) const { return next_[producer]; }
  std::uint64_t position() const { return position_.load(); }

 private:
  void run() {
    auto check = [&](const Message& m) {
      testing::CheckHeader h;
      if (failed_) return;
      if (!testing::check_message(m.payload, h)) return fail("damaged message at " + at(m));
      if (h.producer == kMarker) {
        last_marker_ = static_cast<std::int64_t>(h.seq);
        return;
      }
      if (h.producer >= next_.size()) return fail("unknown producer at " + at(m));
      if (h.seq != next_[h.producer])
        return fail("producer " + std::to_string(h.producer) + ": seq " + std::to_string(h.seq) +
                    ", expected " + std::to_string(next_[h.producer]) + " at " + at(m));
      ++next_[h.producer];
    };
    while (!stop_ && !failed_) {
      const PollResult r = consumer_.poll_wait(check, 256, 10ms);
      position_ = consumer_.position();
      if (r.status != Status::Ok && r.status != Status::Timeout)
        fail(std::string("poll: ") + to_string(r.status) + " at " +
             std::to_string(consumer_.position()));
    }
  }
  static std::string at(const Message& m) { return std::to_string(m.position); }
  void fail(const std::string& why) {
    if (failed_) return;
    failure_ = why;
    failed_ = true;
  }
  Consumer consumer_;
  std::vector<std::uint64_t> next_;
  std::atomic<std::int64_t> last_marker_{-1};
  std::atomic<std::uint64_t> position_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::string failure_;
  std::thread thread_;  // last: starts after the rest is built
};

// The u64 a killed producer's worker counts its Ok'd offers in.
class AckFile {
 public:
  explicit AckFile(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd, 0) << path;
    EXPECT_EQ(::ftruncate(fd, sizeof(std::uint64_t)), 0);
    void* m = ::mmap(nullptr, sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    EXPECT_NE(m, MAP_FAILED);
    word_ = static_cast<std::uint64_t*>(m);
  }
  ~AckFile() { ::munmap(word_, sizeof(std::uint64_t)); }
  std::uint64_t load() const {
    return std::atomic_ref<std::uint64_t>(*word_).load(std::memory_order_acquire);
  }
  void reset() { std::atomic_ref<std::uint64_t>(*word_).store(0); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::uint64_t* word_ = nullptr;
};

class RandomKills : public testing::TestBus, public ::testing::WithParamInterface<KillCase> {
 protected:
  void TearDown() override {
    if (daemon_) {
      ::kill(daemon_->pid(), SIGTERM);
      EXPECT_EQ(daemon_->wait(30s), 0) << "shmbusd did not stop cleanly";
      daemon_.reset();
      ::unsetenv("SHMBUS_SOCKET");
    }
    testing::TestBus::TearDown();
  }
  void start_daemon() {
    const char* d = std::getenv("SHMBUSD");
    ASSERT_NE(d, nullptr) << "SHMBUSD names the daemon to test with";
    std::filesystem::create_directories(root_);
    const std::string sock = root_ + "/bus.sock";
    ::setenv("SHMBUS_SOCKET", sock.c_str(), 1);  // for us and the workers
    daemon_.emplace(std::vector<std::string>{d, "--foreground", "--bus", bus, "--socket", sock,
                                             "--max-topic-bytes", "67108864"});
    ASSERT_TRUE(daemon_->started());
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    struct stat st;
    while (::stat(sock.c_str(), &st) != 0) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "shmbusd opened no socket";
      ASSERT_EQ(daemon_->wait(0ms), -1) << "shmbusd exited at start";
      std::this_thread::sleep_for(5ms);
    }
  }
  std::optional<Child> daemon_;
};

TEST_P(RandomKills, EveryOkMessageOnceAndNoHoleStallsAConsumer) {
  const KillCase k = GetParam();
  if (k.daemon) {
    ASSERT_NO_FATAL_FAILURE(start_daemon());
  }
  TopicOptions o;
  o.policy = k.policy;
  o.exclusive_producer = k.exclusive;
  o.max_producers = 8;
  if (k.policy == Policy::Block) {
    // Small: producers are often waiting for room when they die.
    o.segment_bytes = 16 * 1024;
    o.segment_count = 4;
  } else {
    // Large, and the producers paced: no consumer may be lapped (the policy
    // would then lose messages legitimately, and the test could not tell).
    o.segment_bytes = 1024 * 1024;
    o.segment_count = 16;
  }
  ASSERT_TRUE(Topic::create(bus, "k", o));

  const std::uint32_t rounds = kills_per_case();
  const std::uint32_t per_round = k.exclusive ? 1 : 2;
  const std::uint32_t producers = rounds * per_round;
  std::vector<std::unique_ptr<CheckingReader>> readers;
  for (int i = 0; i < 2; ++i) {
    auto c = Consumer::open(bus, "k");
    ASSERT_TRUE(c) << c.error().message;
    readers.push_back(std::make_unique<CheckingReader>(std::move(c).value(), producers));
  }
  std::vector<std::unique_ptr<AckFile>> acks;
  for (std::uint32_t j = 0; j < per_round; ++j)
    acks.push_back(std::make_unique<AckFile>(root_ + "/ack" + std::to_string(j)));
  std::vector<std::uint64_t> acked(producers, 0);

  const std::uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> delay_us(0, 2000);
  const std::string pace = k.policy == Policy::Overwrite ? "2000" : "0";
  const std::string max_body = "200";  // frames of 32..256 B: segment-end pads are common

  auto failed = [&] {
    for (auto& r : readers)
      if (r->failed()) return true;
    return false;
  };
  std::uint32_t kills = 0;
  for (std::uint32_t round = 0; round < rounds && !failed(); ++round) {
    std::vector<Child> ps;
    for (std::uint32_t j = 0; j < per_round; ++j) {
      acks[j]->reset();
      ps.emplace_back(std::vector<std::string>{worker(), "acked", bus, "k",
                                               std::to_string(round * per_round + j), max_body,
                                               acks[j]->path(), pace});
      ASSERT_TRUE(ps.back().started());
    }
    // Each is killed after its first Ok, at a uniformly random moment of
    // the next 2 ms: inside offer, inside a wait for room, between two.
    for (std::uint32_t j = 0; j < per_round; ++j) {
      const auto started = std::chrono::steady_clock::now();
      while (acks[j]->load() == 0) {
        ASSERT_EQ(ps[j].wait(0ms), -1) << "producer " << round * per_round + j << " exited";
        ASSERT_LT(std::chrono::steady_clock::now() - started, 30s)
            << "producer " << round * per_round + j << " published nothing in 30 s (round " << round
            << ")";
        std::this_thread::sleep_for(50us);
      }
    }
    for (std::uint32_t j = 0; j < per_round; ++j) {
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
      ps[j].kill9();
    }
    for (std::uint32_t j = 0; j < per_round; ++j) {
      ASSERT_EQ(ps[j].wait(10s), 128 + SIGKILL);
      acked[round * per_round + j] = acks[j]->load();
      ++kills;
    }
    // A fresh producer's marker reaches every consumer within 1 s.
    {
      auto marker = Producer::open(bus, "k");
      ASSERT_TRUE(marker) << "round " << round << ": " << marker.error().message;
      std::vector<std::byte> msg;
      testing::make_message(kMarker, round, 16, msg);
      const auto deadline = std::chrono::steady_clock::now() + 1s;
      Status s;
      while ((s = marker->offer(msg)) == Status::Full) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline)
            << "round " << round << ": the marker found no room for 1 s";
        std::this_thread::yield();
      }
      ASSERT_EQ(s, Status::Ok);
    }
    const auto published = std::chrono::steady_clock::now();
    for (auto& r : readers) {
      while (r->last_marker() != static_cast<std::int64_t>(round) && !r->failed()) {
        ASSERT_LT(std::chrono::steady_clock::now() - published, 1s)
            << "round " << round << ": a consumer did not get the marker within 1 s; it is at "
            << r->position() << ", tail " << Topic::describe(bus, "k")->partitions[0].tail;
        std::this_thread::sleep_for(100us);
      }
    }
  }
  for (auto& r : readers) {
    r->stop();
    ASSERT_FALSE(r->failed()) << r->failure();
    for (std::uint32_t id = 0; id < producers && id < kills; ++id) {
      EXPECT_GE(r->received(id), acked[id]) << "producer " << id << ": an Ok'd message was lost";
      EXPECT_LE(r->received(id), acked[id] + 1) << "producer " << id;
    }
  }
  EXPECT_EQ(kills, rounds * per_round);
  std::printf("%u producers killed\n", kills);
}

INSTANTIATE_TEST_SUITE_P(
    , RandomKills,
    ::testing::Values(KillCase{Policy::Block, false, false}, KillCase{Policy::Block, true, false},
                      KillCase{Policy::Overwrite, false, false},
                      KillCase{Policy::Overwrite, true, false},
                      KillCase{Policy::Block, false, true}, KillCase{Policy::Block, true, true},
                      KillCase{Policy::Overwrite, false, true},
                      KillCase{Policy::Overwrite, true, true}),
    [](const ::testing::TestParamInfo<KillCase>& c) {
      return std::string(c.param.policy == Policy::Block ? "Block" : "Overwrite") +
             (c.param.exclusive ? "Exclusive" : "Shared") +
             (c.param.daemon ? "WithDaemon" : "NoDaemon");
    });

}  // namespace
}  // namespace shmbus
