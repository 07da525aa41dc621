// Durable named cursors (ConsumerOptions::name): a slot that belongs to a
// name, survives its holder's close and death, gates while parked, has one
// holder at a time, and goes only when the name is deleted.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "log/named_cursor.hpp"
#include "log/ring.hpp"
#include "log/topic_files.hpp"
#include "shm/file.hpp"
#include "test_bus.hpp"

namespace shmbus {
namespace {

using testing::bytes;
using testing::text;

class NamedCursorTest : public testing::TestBus {
 protected:
  static TopicOptions small(Policy policy) {
    TopicOptions o;
    o.segment_bytes = 4096;
    o.segment_count = 2;
    o.policy = policy;
    return o;
  }
  static ConsumerOptions named(std::string name) {
    ConsumerOptions o;
    o.name = std::move(name);
    return o;
  }
  void publish(Producer& p, int from, int to) {
    for (int i = from; i < to; ++i)
      ASSERT_EQ(p.offer(bytes("m" + std::to_string(i))), Status::Ok) << i;
  }
  static std::vector<std::string> read(Consumer& c, std::uint32_t max) {
    std::vector<std::string> got;
    const PollResult r = c.poll([&](const Message& m) { got.emplace_back(text(m.payload)); }, max);
    EXPECT_TRUE(r.status == Status::Ok || r.status == Status::Empty) << to_string(r.status);
    return got;
  }
  // The named cursors of partition 0 as describe shows them: name -> pid.
  std::vector<std::pair<std::string, std::uint32_t>> named_cursors() const {
    std::vector<std::pair<std::string, std::uint32_t>> out;
    auto info = Topic::describe(bus, "t");
    EXPECT_TRUE(info) << info.error().message;
    if (!info) return out;
    const PartitionInfo& p = info->partitions.at(0);
    for (std::size_t i = 0; i < p.consumer_names.size(); ++i)
      if (!p.consumer_names[i].empty()) out.emplace_back(p.consumer_names[i], p.consumer_pids[i]);
    return out;
  }
  static std::vector<std::string> expected(int from, int to) {
    std::vector<std::string> v;
    for (int i = from; i < to; ++i) v.push_back("m" + std::to_string(i));
    return v;
  }
};

TEST_F(NamedCursorTest, ResumesWhereItsLastHolderStoppedWhateverStartSays) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p);
  {
    ConsumerOptions o = named("audit");
    o.start = ConsumerOptions::Start::Earliest;
    auto c = Consumer::open(bus, "t", o);
    ASSERT_TRUE(c) << c.error().message;
    publish(*p, 0, 10);
    EXPECT_EQ(read(*c, 4), expected(0, 4));
  }
  ASSERT_EQ(named_cursors().size(), 1u);
  EXPECT_EQ(named_cursors()[0], std::make_pair(std::string("audit"), log::kNoHolder));
  publish(*p, 10, 12);
  ConsumerOptions latest = named("audit");
  latest.start = ConsumerOptions::Start::Latest;  // ignored: the name exists
  auto again = Consumer::open(bus, "t", latest);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(read(*again, 100), expected(4, 12));
  EXPECT_EQ(named_cursors()[0].second, static_cast<std::uint32_t>(::getpid()));
}

// A parked named cursor holds `block` producers back like a live one;
// deleting the name lets them go on. An anonymous consumer that closes does not.
TEST_F(NamedCursorTest, ParkedCursorGatesBlockProducersUntilDeleted) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p);
  { ASSERT_TRUE(Consumer::open(bus, "t")); }  // anonymous: gone when closed
  { ASSERT_TRUE(Consumer::open(bus, "t", named("archive"))); }
  const std::string payload(1000, 'x');
  int offered = 0;
  while (p->offer(bytes(payload)) == Status::Ok) ASSERT_LT(++offered, 100);
  EXPECT_GE(offered, 6);  // about a ring (8 KiB) of 1 KiB messages
  EXPECT_EQ(p->offer(bytes(payload)), Status::Full);
  ASSERT_TRUE(Topic::delete_cursor(bus, "t", 0, "archive"));
  EXPECT_TRUE(named_cursors().empty());
  EXPECT_EQ(p->offer(bytes(payload)), Status::Ok);
}

// A durable topic has its spiller's cursor from creation, parked at 0: a
// `block` producer is held back from the first byte, before any spiller ran.
TEST_F(NamedCursorTest, ADurableTopicIsBornWithItsSpillersCursorGating) {
  TopicOptions o = small(Policy::Block);
  o.durable = true;
  // Topic::create refuses a durable topic without shmbusd (its spiller);
  // the files are what the daemon makes.
  const Outcome refused = Topic::create(bus, "t", o);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ENOTSUP);
  ASSERT_TRUE(log::create_topic_files(shm::bus_directory(bus), "t", o));
  const auto cursors = named_cursors();
  ASSERT_EQ(cursors.size(), 1u);
  EXPECT_EQ(cursors[0].first, "shmbus.spill");
  EXPECT_EQ(cursors[0].second, log::kNoHolder);
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p);
  const std::string payload(1000, 'x');
  int offered = 0;
  while (p->offer(bytes(payload)) == Status::Ok) ASSERT_LT(++offered, 100);
  EXPECT_GE(offered, 6);
  EXPECT_EQ(p->offer(bytes(payload)), Status::Full);
}

// Killed holders (no destructor runs): the reapers leave the slot, which
// keeps gating and resumes where the dead holder's last batch ended.
TEST_F(NamedCursorTest, SurvivesItsHoldersDeathAndTheReapers) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p);
  publish(*p, 0, 10);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ConsumerOptions o = named("spill");
    o.start = ConsumerOptions::Start::Earliest;
    auto c = Consumer::open(bus, "t", o);
    int n = 0;
    if (c) c->poll([&](const Message&) { ++n; }, 3);
    const char done = n == 3 ? 'y' : 'n';
    (void)!::write(pipe_fds[1], &done, 1);
    ::pause();  // killed here, holding the slot
    ::_exit(1);
  }
  char done = 0;
  ASSERT_EQ(::read(pipe_fds[0], &done, 1), 1);
  ASSERT_EQ(done, 'y');
  ::kill(child, SIGKILL);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  auto r = open_ring();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reap_dead_consumers(UINT64_MAX), 0u);
  ASSERT_EQ(named_cursors().size(), 1u);
  EXPECT_EQ(named_cursors()[0].second, log::kNoHolder);  // its holder is dead
  auto c = Consumer::open(bus, "t", named("spill"));
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(read(*c, 100), expected(3, 10));
}

TEST_F(NamedCursorTest, HasOneHolderAtATime) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Overwrite)));
  auto first = Consumer::open(bus, "t", named("g"));
  ASSERT_TRUE(first);
  auto second = Consumer::open(bus, "t", named("g"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, EBUSY);
  EXPECT_NE(second.error().message.find("held by pid " + std::to_string(::getpid())),
            std::string::npos)
      << second.error().message;
  auto other = Consumer::open(bus, "t", named("h"));  // another name: its own slot
  EXPECT_TRUE(other) << other.error().message;
  auto denied = Topic::delete_cursor(bus, "t", 0, "g");
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, EBUSY);
}

// Creators of one new name at the same time: one slot of that name, one holder.
TEST_F(NamedCursorTest, RacingCreatorsMakeOneSlot) {
  TopicOptions o = small(Policy::Overwrite);
  o.max_consumers = 8;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  for (int round = 0; round < 100; ++round) {
    std::atomic<int> go{0}, won{0}, busy{0};
    std::vector<std::optional<Consumer>> held(4);
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i)
      ts.emplace_back([&, i] {
        while (go.load() == 0) {
        }
        auto c = Consumer::open(bus, "t", named("race"));
        if (c) {
          won.fetch_add(1);
          held[i].emplace(std::move(c).value());
        } else {
          EXPECT_EQ(c.error().code, EBUSY) << c.error().message;
          busy.fetch_add(1);
        }
      });
    go.store(1);
    for (auto& t : ts) t.join();
    ASSERT_EQ(won.load(), 1) << "round " << round;
    ASSERT_EQ(named_cursors().size(), 1u) << "round " << round;
    held.clear();
    ASSERT_TRUE(Topic::delete_cursor(bus, "t", 0, "race")) << "round " << round;
  }
}

TEST_F(NamedCursorTest, BadNamesAndUnknownCursorsAreRefusedByName) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Overwrite)));
  for (const std::string& bad : std::vector<std::string>{".hidden", "a/b", std::string(64, 'n')}) {
    auto c = Consumer::open(bus, "t", named(bad));
    ASSERT_FALSE(c) << bad;
    EXPECT_EQ(c.error().code, EINVAL);
  }
  ConsumerOptions observer = named("obs");
  observer.gating = false;
  auto o = Consumer::open(bus, "t", observer);
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, EINVAL);
  auto gone = Topic::delete_cursor(bus, "t", 0, "nobody");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ENOENT);
  EXPECT_NE(gone.error().message.find("'nobody'"), std::string::npos);
}

// Never trust shared memory: a stored position that is no frame boundary
// is refused with the cursor's name, not read from.
TEST_F(NamedCursorTest, DamagedPositionIsRefusedWithTheCursorsName) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Block)));
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p);
  publish(*p, 0, 3);
  { ASSERT_TRUE(Consumer::open(bus, "t", named("d"))); }
  auto r = open_ring();
  ASSERT_TRUE(r);
  auto found = log::find_named(*r, "d");
  ASSERT_TRUE(found);
  for (std::uint64_t bad : {std::uint64_t{8}, std::uint64_t{1} << 40, std::uint64_t{32}}) {
    log::atomic(found->slot->position).store(bad);
    auto c = Consumer::open(bus, "t", named("d"));
    ASSERT_FALSE(c) << bad;
    EXPECT_EQ(c.error().code, EPROTO);
    EXPECT_NE(c.error().message.find("cursor 'd'"), std::string::npos) << c.error().message;
    EXPECT_NE(c.error().message.find("damaged"), std::string::npos) << c.error().message;
  }
  // Garbage in the name bytes reads as no valid name.
  log::atomic(found->slot->name[7]).store(~std::uint64_t{0});
  EXPECT_FALSE(log::find_named(*r, "d"));
}

// On `overwrite` a parked cursor does not gate: lapped, its next holder is told.
TEST_F(NamedCursorTest, LappedOnOverwriteResumesLagged) {
  ASSERT_TRUE(Topic::create(bus, "t", small(Policy::Overwrite)));
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p);
  publish(*p, 0, 2);
  { ASSERT_TRUE(Consumer::open(bus, "t", named("slow"))); }
  const std::string payload(1000, 'x');
  for (int i = 0; i < 40; ++i) ASSERT_EQ(p->offer(bytes(payload)), Status::Ok);
  auto c = Consumer::open(bus, "t", named("slow"));
  ASSERT_TRUE(c) << c.error().message;
  const PollResult r = c->poll([](const Message&) {});
  EXPECT_EQ(r.status, Status::Lagged);
  EXPECT_LT(c->lost().from, c->lost().to);
}

}  // namespace
}  // namespace shmbus
