// tests/unit/registry_test.cpp — the bus registry (lib/control/registry.hpp):
// what the daemon writes a client reads back, the generation moves on every
// change, and a damaged file is an error naming it, never a crash.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>

#include "control/registry.hpp"
#include "test_bus.hpp"

namespace shmbus::control {
namespace {

std::uint64_t fuzz_seed() {
  const char* s = std::getenv("SHMBUS_FUZZ_SEED");
  return s != nullptr && *s != '\0' ? std::strtoull(s, nullptr, 0) : 20261125;
}

TopicRecord record(const std::string& name, std::uint32_t partitions) {
  TopicRecord r;
  r.state = EntryState::Live;
  r.name = name;
  r.options.partitions = partitions;
  r.options.segment_bytes = 8192;
  r.options.segment_count = 4;
  r.options.policy = Policy::Overwrite;
  r.options.hung_producer_timeout_ms = 250;
  r.options.slow_consumer_timeout_ms = 5000;
  r.numa_node = -1;
  r.acl.owner_uid = 1000;
  r.acl.group_gid = 100;
  r.acl.mode = 0640;
  r.acl.consumer_users = {1001, 1002};
  r.acl.producer_groups = {7};
  return r;
}

class RegistryTest : public testing::TestBus {
 protected:
  std::string path() const { return registry_path(dir()); }
};

TEST_F(RegistryTest, DaemonWritesClientReads) {
  auto writer = Registry::open_or_create(path());
  ASSERT_TRUE(writer) << writer.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u) << "readable, never writable by others";

  auto reader = Registry::open(path());
  ASSERT_TRUE(reader) << reader.error().message;
  const std::uint64_t g0 = reader->generation();
  EXPECT_EQ(g0 % 2, 0u);

  ASSERT_TRUE(writer->put(record("prices", 3)));
  const std::uint64_t g1 = reader->generation();
  EXPECT_GT(g1, g0);
  EXPECT_EQ(g1 % 2, 0u);
  auto half = record("half", 1);
  half.state = EntryState::Creating;
  ASSERT_TRUE(writer->put(half));

  auto live = reader->read();
  ASSERT_TRUE(live) << live.error().message;
  ASSERT_EQ(live->size(), 1u) << "readers see Live entries only";
  const TopicRecord& r = live->front();
  EXPECT_EQ(r.name, "prices");
  EXPECT_EQ(r.options.partitions, 3u);
  EXPECT_EQ(r.options.segment_bytes, 8192u);
  EXPECT_EQ(r.options.policy, Policy::Overwrite);
  EXPECT_EQ(r.options.hung_producer_timeout_ms, 250u);
  EXPECT_EQ(r.options.slow_consumer_timeout_ms, 5000u);
  EXPECT_EQ(r.acl.mode, 0640u);
  EXPECT_EQ(r.acl.consumer_users, (std::vector<std::uint32_t>{1001, 1002}));
  EXPECT_EQ(r.acl.producer_groups, std::vector<std::uint32_t>{7});
  auto all = reader->read(true);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 2u);

  const std::uint64_t g2 = reader->generation();
  writer->erase("prices");
  EXPECT_GT(reader->generation(), g2);
  live = reader->read();
  ASSERT_TRUE(live);
  EXPECT_TRUE(live->empty());

  // A client's mapping is read-only: the registry file is not theirs to write.
  EXPECT_FALSE(reader->put(record("x", 1)));

  // A second writer is refused while the first holds the file (one daemon
  // per bus), and adopts the entries once the first is gone.
  auto second = Registry::open_or_create(path());
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("held by another shmbusd"), std::string::npos)
      << second.error().message;
  writer = second.error();
  writer = Registry::open_or_create(path());
  ASSERT_TRUE(writer) << writer.error().message;
  all = writer->read(true);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ(all->front().state, EntryState::Creating);
}

// A writer that died mid-write leaves the generation odd: readers give up
// with an error that says so, and the next daemon repairs it.
TEST_F(RegistryTest, OddGenerationIsReportedThenRepaired) {
  {
    auto writer = Registry::open_or_create(path());
    ASSERT_TRUE(writer);
    ASSERT_TRUE(writer->put(record("t", 1)));
  }
  {
    const int fd = ::open(path().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    std::uint64_t g = 0;
    ASSERT_EQ(::pread(fd, &g, 8, offsetof(RegistryHeader, generation)), 8);
    g |= 1;
    ASSERT_EQ(::pwrite(fd, &g, 8, offsetof(RegistryHeader, generation)), 8);
    ::close(fd);
  }
  auto reader = Registry::open(path());
  ASSERT_TRUE(reader);
  auto r = reader->read();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find(path()), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("odd"), std::string::npos) << r.error().message;

  auto writer = Registry::open_or_create(path());
  ASSERT_TRUE(writer) << writer.error().message;
  r = reader->read();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->size(), 1u);
}

// Seeded mutations of a registry with entries: every open or read either
// succeeds with valid records or fails with an error naming the file.
TEST_F(RegistryTest, DamagedFileIsAnErrorNamingIt) {
  {
    auto writer = Registry::open_or_create(path());
    ASSERT_TRUE(writer);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(writer->put(record("t" + std::to_string(i), 2)));
  }
  std::vector<std::byte> pristine;
  {
    const int fd = ::open(path().c_str(), O_RDONLY);
    struct stat st {};
    ASSERT_EQ(::fstat(fd, &st), 0);
    pristine.resize(static_cast<std::size_t>(st.st_size));
    ASSERT_EQ(::pread(fd, pristine.data(), pristine.size(), 0),
              static_cast<ssize_t>(pristine.size()));
    ::close(fd);
  }
  // A registry of 8 entries is as valid as one of kRegistryCapacity, and
  // 2000 rewrites of it are quick.
  constexpr std::uint32_t kEntries = 8;
  pristine.resize(sizeof(RegistryHeader) + kEntries * sizeof(RegistryEntry));
  reinterpret_cast<RegistryHeader*>(pristine.data())->capacity = kEntries;
  reinterpret_cast<RegistryHeader*>(pristine.data())->file.file_bytes = pristine.size();
  const std::uint64_t seed = fuzz_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (SHMBUS_FUZZ_SEED)");
  std::mt19937_64 rng(seed);
  // Mutations aim at the header and the five entries, where the meaning is.
  const std::size_t hot = sizeof(RegistryHeader) + 5 * sizeof(RegistryEntry);
  int refused = 0, accepted = 0;
  for (int round = 0; round < 2000; ++round) {
    std::vector<std::byte> bytes = pristine;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const std::size_t at =
          round % 10 == 0 ? rng() % sizeof(RegistryHeader) : rng() % hot;  // header now and then
      bytes[at] = static_cast<std::byte>(rng());
    }
    if (round % 50 == 0) bytes.resize(rng() % bytes.size());  // truncated
    {
      const int fd = ::open(path().c_str(), O_WRONLY | O_TRUNC);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
      ::close(fd);
    }
    auto reader = Registry::open(path());
    Result<std::vector<TopicRecord>> got =
        reader ? reader->read(true) : Result<std::vector<TopicRecord>>(reader.error());
    if (!got) {
      ++refused;
      ASSERT_NE(got.error().message.find(path()), std::string::npos)
          << "round " << round << ": " << got.error().message;
      continue;
    }
    ++accepted;  // a flip in a name's unused bytes or an id past its count changes nothing
    for (const TopicRecord& r : *got) {
      ASSERT_FALSE(r.name.empty());
      ASSERT_LE(r.name.size(), kMaxName);
      ASSERT_GE(r.options.partitions, 1u);
      ASSERT_LE(r.acl.consumer_users.size(), kMaxIds);
    }
  }
  std::printf("registry mutations: %d refused with the file's name, %d still valid\n", refused,
              accepted);
  EXPECT_GT(refused, 100);
}

}  // namespace
}  // namespace shmbus::control
