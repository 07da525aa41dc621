// tests/daemon/daemon_test.cpp — shmbusd as a real process (fork + exec) on a
// private socket and a private SHMBUS_SHM_ROOT: the control protocol, fd
// passing, configuration errors, a seeded mutation storm, ACLs with real other
// uids, and kill -9 of a producer inside a claim.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../multiprocess/message_check.hpp"
#include "control/client.hpp"
#include "control/protocol.hpp"
#include "control/registry.hpp"
#include "log/layout.hpp"
#include "log/ring.hpp"
#include "log/topic_files.hpp"
#include "shmbus/shmbus.hpp"

namespace shmbus::control {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const char* daemon_path() {
  const char* p = std::getenv("SHMBUSD");
  return p != nullptr ? p : "shmbusd";
}

// Runs shmbusd with `args`; stderr goes to `err_file` when given.
pid_t spawn(const std::vector<std::string>& args, const std::string& err_file = {}) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!err_file.empty()) {
      const int fd = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) ::dup2(fd, 2);
    }
    std::vector<char*> argv;
    std::string prog = daemon_path();
    argv.push_back(prog.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(prog.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// How many descriptors process `pid` has open.
std::size_t open_fds(pid_t pid) {
  const auto dir = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd");
  return static_cast<std::size_t>(std::distance(begin(dir), end(dir)));
}

DaemonStats stats_of(Connection& c) {
  Message m;
  m.type = MsgType::Stats;
  auto r = c.call(m);
  EXPECT_TRUE(r && r->message.type == MsgType::StatsReply);
  return r && r->message.type == MsgType::StatsReply ? r->message.stats : DaemonStats{};
}

// Polls `done` every millisecond for up to `limit`; its last answer.
template <class Done>
bool wait_until(Done done, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!done() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  return done();
}

class Daemon : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/dev/shm/shmbusd-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0755);  // other uids reach the socket, never the bus
    root_ = dir_ + "/shm";
    socket_ = dir_ + "/bus.sock";
    ::setenv("SHMBUS_SHM_ROOT", root_.c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("SHMBUS_SOCKET");  // set by tests of the client library, even when they fail
    ::unsetenv("SHMBUS_DAEMON_TIMEOUT_MS");
    stop();
    std::filesystem::remove_all(dir_);
  }

  void start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--foreground", "--bus",      bus_,
                                     "--socket",     socket_,      "--max-topic-bytes",
                                     "67108864",     "--data-dir", dir_ + "/data"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = spawn(args, dir_ + "/daemon.log");
    const auto deadline = Clock::now() + 20s;
    while (Clock::now() < deadline) {
      if (auto c = Connection::connect(socket_, "probe"); c) return;
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "shmbusd exited at start:\n" << slurp(dir_ + "/daemon.log");
      }
      std::this_thread::sleep_for(5ms);
    }
    FAIL() << "shmbusd did not open its socket in 20 s";
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);  // in case a test stopped it
    ::kill(pid_, SIGTERM);
    EXPECT_EQ(wait_exit(pid_), 0) << slurp(dir_ + "/daemon.log");
    pid_ = -1;
  }
  bool daemon_alive() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }

  Connection connect() {
    auto c = Connection::connect(socket_, "test");
    EXPECT_TRUE(c) << c.error().message;
    return std::move(c.value());
  }

  static Message create_request(const std::string& name, std::uint32_t partitions = 1) {
    Message m;
    m.type = MsgType::CreateTopic;
    m.name = name;
    m.options.partitions = partitions;
    m.options.segment_bytes = 4096;
    m.options.segment_count = 4;
    m.acl.owner_uid = 0;
    m.acl.group_gid = 0;
    m.acl.mode = 0640;
    return m;
  }
  static Message named(MsgType t, const std::string& name, std::uint32_t partition = 0) {
    Message m;
    m.type = t;
    m.name = name;
    m.partition = partition;
    return m;
  }

  std::string dir_, root_, socket_;
  std::string bus_ = "test";
  pid_t pid_ = -1;
};

TEST_F(Daemon, CreateDescribeListDelete) {
  start();
  Connection c = connect();
  auto r = c.call(create_request("prices", 2));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->message.type, MsgType::Ok) << r->message.text;
  r = c.call(create_request("prices", 2));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.type, MsgType::Error);
  EXPECT_EQ(r->message.code, ErrorCode::Exists);

  auto bad = create_request("o+w");
  bad.acl.mode = 0666;
  r = c.call(bad);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.code, ErrorCode::Invalid) << r->message.text;

  r = c.call(named(MsgType::DescribeTopic, "prices"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->message.type, MsgType::Described) << r->message.text;
  EXPECT_EQ(r->message.options.partitions, 2u);
  EXPECT_EQ(r->message.options.segment_bytes, 4096u);
  ASSERT_EQ(r->message.partitions.size(), 2u);
  EXPECT_EQ(r->message.partitions[0].tail, 0u);

  // Files carry the ACL's mode, never world-writable.
  struct stat st {};
  ASSERT_EQ(::stat((root_ + "/" + bus_ + "/prices.0.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);

  r = c.call(create_request("volumes"));
  ASSERT_TRUE(r);
  Message list;
  list.type = MsgType::ListTopics;
  r = c.call(list);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->message.type, MsgType::Listed);
  EXPECT_EQ(r->message.names, (std::vector<std::string>{"prices", "volumes"}));

  r = c.call(named(MsgType::DeleteTopic, "prices"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.type, MsgType::Ok) << r->message.text;
  r = c.call(named(MsgType::DescribeTopic, "prices"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.code, ErrorCode::NotFound);
  EXPECT_FALSE(std::filesystem::exists(root_ + "/" + bus_ + "/prices.0.log"));

  Message stats;
  stats.type = MsgType::Stats;
  r = c.call(stats);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->message.type, MsgType::StatsReply);
  EXPECT_EQ(r->message.stats.topics, 1u);
}

// More names than one reply holds (64 KiB): ListTopics pages in name
// order, says `more` while names remain, and loses or repeats none.
TEST_F(Daemon, ListTopicsPagesWhatOneReplyCannotHold) {
  start();
  Connection c = connect();
  std::vector<std::string> made;
  for (int i = 0; i < 400; ++i) {  // 400 x ~200 B of names: two pages
    char prefix[8];
    std::snprintf(prefix, sizeof prefix, "%04d-", i);
    made.push_back(prefix + std::string(195, 'n'));
    auto r = c.call(create_request(made.back()));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->message.type, MsgType::Ok) << r->message.text;
  }
  std::vector<std::string> listed;
  int pages = 0;
  for (std::string after;; ++pages) {
    ASSERT_LT(pages, 10);
    Message list;
    list.type = MsgType::ListTopics;
    list.name = after;
    auto r = c.call(list);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->message.type, MsgType::Listed) << r->message.text;
    ASSERT_FALSE(r->message.names.empty());
    listed.insert(listed.end(), r->message.names.begin(), r->message.names.end());
    if (!r->message.more) break;
    after = r->message.names.back();
  }
  EXPECT_EQ(pages, 1);  // two replies
  EXPECT_EQ(listed, made);
}

TEST_F(Daemon, AttachPassesDescriptors) {
  start();
  Connection c = connect();
  ASSERT_EQ(c.call(create_request("t"))->message.type, MsgType::Ok);

  auto p = c.call(named(MsgType::AttachProducer, "t"));
  ASSERT_TRUE(p);
  ASSERT_EQ(p->message.type, MsgType::Attached) << p->message.text;
  ASSERT_EQ(p->fds.size(), 2u);
  const std::size_t bytes = p->message.ring_bytes;
  void* rw = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, p->fds[0].get(), 0);
  ASSERT_NE(rw, MAP_FAILED) << std::strerror(errno);
  EXPECT_EQ(static_cast<const shm::FileHeader*>(rw)->magic, shm::kMagic);
  ::munmap(rw, bytes);

  auto q = c.call(named(MsgType::AttachConsumer, "t"));
  ASSERT_TRUE(q);
  ASSERT_EQ(q->message.type, MsgType::Attached) << q->message.text;
  ASSERT_EQ(q->fds.size(), 2u);
  void* ro = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, q->fds[0].get(), 0);
  ASSERT_NE(ro, MAP_FAILED);
  EXPECT_EQ(static_cast<const shm::FileHeader*>(ro)->kind, shm::FileKind::Ring);
  ::munmap(ro, bytes);
  // A consumer's log is read-only: no writable shared mapping of it.
  errno = 0;
  EXPECT_EQ(::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, q->fds[0].get(), 0),
            MAP_FAILED);
  EXPECT_EQ(errno, EACCES);
  // Its cursor file is writable.
  struct stat st {};
  ASSERT_EQ(::fstat(q->fds[1].get(), &st), 0);
  void* cur = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE,
                     MAP_SHARED, q->fds[1].get(), 0);
  ASSERT_NE(cur, MAP_FAILED);
  EXPECT_EQ(static_cast<const shm::FileHeader*>(cur)->kind, shm::FileKind::Cursors);
  ::munmap(cur, static_cast<std::size_t>(st.st_size));

  // Attach time: one request, the ACL check, two open()s and the fds passed back.
  std::vector<double> us;
  for (int i = 0; i < 200; ++i) {
    const auto t0 = Clock::now();
    auto a = c.call(named(MsgType::AttachConsumer, "t"));
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    ASSERT_TRUE(a && a->message.type == MsgType::Attached);
  }
  std::sort(us.begin(), us.end());
  std::printf("attach (request -> reply with 2 fds), 200 attaches: median %.1f us, max %.1f us\n",
              us[us.size() / 2], us.back());

  auto none = c.call(named(MsgType::AttachConsumer, "t", 7));
  ASSERT_TRUE(none);
  EXPECT_EQ(none->message.code, ErrorCode::NotFound);
  EXPECT_TRUE(none->fds.empty());
}

TEST_F(Daemon, ConfigCreatesTopics) {
  const std::string cfg = dir_ + "/good.toml";
  std::ofstream(cfg) << "bus = \"test\"\n"
                        "[[topics]]\n"
                        "name = \"orders\"\n"
                        "partitions = 3\n"
                        "segment_bytes = 8192\n"
                        "segments = 2\n"
                        "policy = \"overwrite\"\n"
                        "alignment = 128\n"
                        "hung_producer_timeout_ms = 250\n"
                        "[topics.acl]\n"
                        "owner = \"root\"\n"
                        "group = 0\n"
                        "mode = \"0600\"\n"
                        "consumer_users = [65534]\n"
                        "[[topics]]\n"
                        "name = \"ticks\"\n"
                        "durable = true\n"
                        "fsync = \"always\"\n"
                        "retention_bytes = 1073741824\n"
                        "retention_ms = 86400000\n";
  start({"--config", cfg});
  Connection c = connect();
  auto r = c.call(named(MsgType::DescribeTopic, "orders"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->message.type, MsgType::Described) << r->message.text;
  EXPECT_EQ(r->message.options.partitions, 3u);
  EXPECT_EQ(r->message.options.policy, Policy::Overwrite);
  EXPECT_EQ(r->message.options.frame_alignment, 128u);
  EXPECT_EQ(r->message.options.hung_producer_timeout_ms, 250u);
  EXPECT_EQ(r->message.options.slow_consumer_timeout_ms, 0u) << "the default: never";
  EXPECT_EQ(r->message.acl.mode, 0600u);
  EXPECT_EQ(r->message.acl.consumer_users, std::vector<std::uint32_t>{65534});
  auto durable = [&](Connection& conn) {
    auto d = conn.call(named(MsgType::DescribeTopic, "ticks"));
    ASSERT_TRUE(d);
    ASSERT_EQ(d->message.type, MsgType::Described) << d->message.text;
    EXPECT_TRUE(d->message.options.durable);
    EXPECT_EQ(d->message.options.fsync, Fsync::Always);
    EXPECT_EQ(d->message.options.retention_bytes, 1u << 30);
    EXPECT_EQ(d->message.options.retention_ms, 86'400'000u);
  };
  durable(c);

  // A restart with the same configuration adopts the existing files.
  stop();
  start({"--config", cfg});
  Connection again = connect();
  r = again.call(named(MsgType::DescribeTopic, "orders"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.type, MsgType::Described) << r->message.text;
  durable(again);
}

// Topics created over the socket are in the registry: a daemon killed with
// SIGKILL and started again serves them; a delete is remembered too.
TEST_F(Daemon, RestartedDaemonAdoptsTopicsCreatedOverTheSocket) {
  start();
  {
    Connection c = connect();
    ASSERT_EQ(c.call(create_request("made-live", 2))->message.type, MsgType::Ok);
    ASSERT_EQ(c.call(create_request("deleted"))->message.type, MsgType::Ok);
    ASSERT_EQ(c.call(named(MsgType::DeleteTopic, "deleted"))->message.type, MsgType::Ok);
  }
  struct stat st {};
  ASSERT_EQ(::stat((root_ + "/" + bus_ + "/registry").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0002, 0u) << "never world-writable";
  // A second daemon for the same bus, even on another socket, does not start.
  const pid_t second = spawn({"--foreground", "--bus", bus_, "--socket", dir_ + "/second.sock"},
                             dir_ + "/second.log");
  EXPECT_EQ(wait_exit(second), 1);
  EXPECT_NE(
      slurp(dir_ + "/second.log").find("held by another shmbusd (pid " + std::to_string(pid_)),
      std::string::npos)
      << slurp(dir_ + "/second.log");
  ::kill(pid_, SIGKILL);
  EXPECT_EQ(wait_exit(pid_), 128 + SIGKILL);
  pid_ = -1;
  start();
  Connection c = connect();
  auto r = c.call(named(MsgType::DescribeTopic, "made-live"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->message.type, MsgType::Described) << r->message.text;
  EXPECT_EQ(r->message.options.partitions, 2u);
  EXPECT_EQ(r->message.acl.mode, 0640u);
  Message list;
  list.type = MsgType::ListTopics;
  r = c.call(list);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.names, std::vector<std::string>{"made-live"});
  EXPECT_NE(slurp(dir_ + "/daemon.log").find("made-live (2 partitions) adopted from the registry"),
            std::string::npos);
}

// A registry with garbage in it stops the daemon at start, naming the file.
TEST_F(Daemon, CorruptRegistryIsRefusedNamingTheFile) {
  start();
  ASSERT_EQ(connect().call(create_request("t"))->message.type, MsgType::Ok);
  stop();
  const std::string registry = root_ + "/" + bus_ + "/registry";
  {
    std::fstream f(registry, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(256 + 4);  // entry 0: its name length
    const std::uint16_t huge = 60000;
    f.write(reinterpret_cast<const char*>(&huge), sizeof huge);
  }
  const pid_t pid = spawn({"--foreground", "--bus", bus_, "--socket", socket_}, dir_ + "/err.txt");
  EXPECT_EQ(wait_exit(pid), 1);
  const std::string err = slurp(dir_ + "/err.txt");
  EXPECT_NE(err.find("registry " + registry + " is damaged: entry 0: name length 60000"),
            std::string::npos)
      << err;
  EXPECT_FALSE(std::filesystem::exists(socket_)) << "the daemon must not serve";
}

TEST_F(Daemon, BadConfigIsRefusedWithFileLineAndKey) {
  struct Case {
    std::string text;
    std::string where;  // expected "file:line:" suffix
    std::string key;
  };
  const std::vector<Case> cases = {
      {"bus = \"b\"\n[[topics]]\nname = \"x\"\nsegment_bytes = 1000\n",
       ":4:", "topics[0].segment_bytes"},
      {"[[topics]]\nname = \"x\"\n[topics.acl]\nmode = \"0666\"\n", ":4:", "topics[0].acl.mode"},
      {"bus = \"b\"\nbogus = 1\n", ":2:", "bogus"},
      {"[[topics]]\nname = \"x\"\npolicy = \"drop\"\n", ":3:", "topics[0].policy"},
      {"[[topics]]\nname = \"x\"\n[topics.acl]\nowner = \"no-such-user-xyz\"\n",
       ":4:", "topics[0].acl.owner"},
      {"bus = \n", ":1:", "(syntax)"},
      {"[[topics]]\nname = \"x\"\nhung_producer_timeout_ms = 5\n",
       ":3:", "topics[0].hung_producer_timeout_ms"},
      {"[[topics]]\nname = \"x\"\nslow_consumer_timeout_ms = -1\n",
       ":3:", "topics[0].slow_consumer_timeout_ms"},
      {"[[topics]]\nname = \"x\"\ndurable = true\nretention_ms = -5\n",
       ":4:", "topics[0].retention_ms"},
      {"[[topics]]\nname = \"x\"\nretention_bytes = 1048576\n",
       ":1:", "retention_bytes, retention_ms: only for a durable topic"},
  };
  int i = 0;
  for (const auto& c : cases) {
    const std::string cfg = dir_ + "/bad" + std::to_string(i++) + ".toml";
    std::ofstream(cfg) << c.text;
    const std::string err = dir_ + "/err.txt";
    const pid_t pid =
        spawn({"--foreground", "--config", cfg, "--socket", socket_, "--bus", "bad"}, err);
    EXPECT_EQ(wait_exit(pid), 2) << c.text;
    const std::string out = slurp(err);
    EXPECT_NE(out.find(cfg + c.where), std::string::npos) << out;
    EXPECT_NE(out.find(c.key), std::string::npos) << out;
    EXPECT_FALSE(std::filesystem::exists(socket_)) << "the daemon must not start";
  }
}

TEST_F(Daemon, DecoderRejectsEachKindOfBadMessage) {
  start();
  auto fresh = Connection::connect(socket_, "");
  ASSERT_TRUE(fresh);
  Connection& c = fresh.value();
  auto expect = [&](std::vector<std::byte> bytes, ErrorCode code) {
    ASSERT_TRUE(c.send_raw(bytes.data(), bytes.size()));
    auto r = c.receive();
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->message.type, MsgType::Error);
    EXPECT_EQ(r->message.code, code) << r->message.text;
  };
  Message list;
  list.type = MsgType::ListTopics;
  expect(encode(list), ErrorCode::OutOfOrder);  // before hello
  Message hello;
  hello.type = MsgType::Hello;
  hello.name = "x";
  auto good_hello = encode(hello);
  ASSERT_TRUE(c.send_raw(good_hello.data(), good_hello.size()));
  ASSERT_EQ(c.receive()->message.type, MsgType::Ok);
  expect(good_hello, ErrorCode::OutOfOrder);  // twice

  auto b = encode(list);
  expect({b.begin(), b.begin() + 7}, ErrorCode::Truncated);
  auto v = b;
  v[4] = std::byte{9};
  expect(v, ErrorCode::BadVersion);
  auto m = b;
  m[0] = std::byte{0};
  expect(m, ErrorCode::BadMagic);
  auto t = b;
  t[6] = std::byte{77};
  expect(t, ErrorCode::UnknownType);
  auto l = b;
  l.push_back(std::byte{1});
  expect(l, ErrorCode::BadLength);
  expect(std::vector<std::byte>(kMaxMessage + 100), ErrorCode::Oversized);
  // A name longer than its bound, with a consistent header.
  auto d = encode(named(MsgType::DescribeTopic, std::string(kMaxName + 1, 'a')));
  expect(d, ErrorCode::Oversized);
  // Reattach with a role that is neither producer nor consumer.
  Message reattach = named(MsgType::Reattach, "t");
  auto bad_role = encode(reattach);
  bad_role.back() = std::byte{7};
  expect(bad_role, ErrorCode::Invalid);
  // Reattach without its role byte: one field short.
  auto short_reattach = encode(reattach);
  short_reattach.pop_back();
  const auto body = static_cast<std::uint32_t>(short_reattach.size() - kHeaderBytes);
  std::memcpy(short_reattach.data() + 8, &body, 4);
  expect(short_reattach, ErrorCode::Truncated);
  // A string length running past the body.
  auto s = encode(named(MsgType::DescribeTopic, "abc"));
  s[kHeaderBytes] = std::byte{50};
  expect(s, ErrorCode::Truncated);
  EXPECT_TRUE(daemon_alive());
}

// Seeded storm of bad messages over several connections; then a good client
// must still be served.
TEST_F(Daemon, SurvivesMutationStorm) {
  start();
  const char* env_seed = std::getenv("SHMBUS_SEED");
  const std::uint64_t seed =
      env_seed != nullptr ? std::strtoull(env_seed, nullptr, 10)
                          : static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  std::printf("mutation storm seed: %llu (rerun with SHMBUS_SEED=%llu)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  auto rnd = [&](std::uint64_t n) { return n == 0 ? 0 : rng() % n; };

  // Templates: one valid message of every request type.
  std::vector<std::vector<std::byte>> templates;
  {
    Message h;
    h.type = MsgType::Hello;
    h.name = "fuzz";
    templates.push_back(encode(h));
    templates.push_back(encode(create_request("fz", 1)));
    templates.push_back(encode(named(MsgType::DeleteTopic, "fz")));
    templates.push_back(encode(named(MsgType::DescribeTopic, "fz")));
    Message l;
    l.type = MsgType::ListTopics;
    templates.push_back(encode(l));
    templates.push_back(encode(named(MsgType::AttachProducer, "fz")));
    templates.push_back(encode(named(MsgType::AttachConsumer, "fz")));
    templates.push_back(encode(named(MsgType::Detach, "fz")));
    templates.push_back(encode(named(MsgType::Reattach, "fz")));
    Message s;
    s.type = MsgType::Stats;
    templates.push_back(encode(s));
  }

  constexpr int kConnections = 4;
  std::vector<Connection> conns;
  auto reconnect = [&](int i) {
    auto c = Connection::connect(socket_, rnd(2) == 0 ? "" : "fuzz");  // half without hello
    ASSERT_TRUE(c) << c.error().message;
    conns[static_cast<std::size_t>(i)] = std::move(c.value());
  };
  conns.resize(kConnections);
  for (int i = 0; i < kConnections; ++i) reconnect(i);

  const auto began = Clock::now();
  const int total = 100'000;
  int errors = 0;
  auto mutate = [&] {
    std::vector<std::byte> msg;
    switch (rnd(8)) {
      case 0: {  // random bytes
        msg.resize(1 + rnd(300));
        for (auto& b : msg) b = static_cast<std::byte>(rng());
        break;
      }
      case 1: {  // truncated valid message
        msg = templates[rnd(templates.size())];
        msg.resize(1 + rnd(msg.size() - 1));
        break;
      }
      case 2: {  // oversized
        msg.resize(kMaxMessage + 1 + rnd(2000), std::byte{0x5a});
        break;
      }
      case 3: {  // a wrong length field
        msg = templates[rnd(templates.size())];
        const auto len = static_cast<std::uint32_t>(rng());
        std::memcpy(msg.data() + 8, &len, 4);
        break;
      }
      case 4: {  // junk appended
        msg = templates[rnd(templates.size())];
        for (std::uint64_t k = 1 + rnd(40); k > 0; --k)
          msg.push_back(static_cast<std::byte>(rng()));
        break;
      }
      case 5: {  // a random type or version
        msg = templates[rnd(templates.size())];
        msg[4 + rnd(4)] = static_cast<std::byte>(rng());
        break;
      }
      default: {  // bytes of the body flipped (may stay valid)
        msg = templates[rnd(templates.size())];
        for (std::uint64_t k = 1 + rnd(3); k > 0; --k)
          msg[rnd(msg.size())] ^= static_cast<std::byte>(1 + rnd(255));
        break;
      }
    }
    return msg;
  };
  // Batches of up to 32 messages on one connection, then their 32 replies:
  // the daemon serves a batch per wake-up, which keeps this fast under TSan.
  for (int n = 0; n < total;) {
    const int ci = static_cast<int>(rnd(kConnections));
    if (rnd(60) == 0) reconnect(ci);
    Connection& c = conns[static_cast<std::size_t>(ci)];
    const int batch = std::min(total - n, 1 + static_cast<int>(rnd(32)));
    for (int k = 0; k < batch; ++k) {
      const std::vector<std::byte> msg = mutate();
      ASSERT_TRUE(c.send_raw(msg.data(), msg.size())) << "message " << n + k;
    }
    for (int k = 0; k < batch; ++k) {
      auto r = c.receive();  // exactly one reply per message; fds are closed with it
      ASSERT_TRUE(r) << "message " << n + k << ": " << r.error().message;
      errors += r->message.type == MsgType::Error;
    }
    n += batch;
    ASSERT_LT(Clock::now() - began, 120s) << "storm too slow at message " << n;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - began).count();
  std::printf("%d messages in %.2f s, %d error replies\n", total, secs, errors);
  EXPECT_GT(errors, total / 2);

  ASSERT_TRUE(daemon_alive());
  Connection good = connect();
  auto r = good.call(create_request("after-storm"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.type, MsgType::Ok) << r->message.text;
  r = good.call(named(MsgType::AttachConsumer, "after-storm"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.type, MsgType::Attached) << r->message.text;
  Message s;
  s.type = MsgType::Stats;
  r = good.call(s);
  ASSERT_TRUE(r);
  EXPECT_GE(r->message.stats.requests, static_cast<std::uint64_t>(total));
}

// Whether uid 65534 can reach `path` at all. It cannot when a directory on
// the way is closed to others, e.g. the root of a chroot made with mktemp -d
// (mode 0700): then the other-uid checks cannot run here, and skip.
bool nobody_can_reach(const std::string& path) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(1);
    ::_exit(::access(path.c_str(), F_OK) == 0 ? 0 : 1);
  }
  return wait_exit(pid) == 0;
}

// In a forked child: drop to `uid`/`gid`, try to attach and to open the ring
// directly. Exit code bits: 1 attach refused with Denied, 2 attach granted,
// 4 direct open failed with EACCES.
int probe_as(std::uint32_t uid, std::uint32_t gid, const std::string& socket,
             const std::string& ring, MsgType attach) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(100);
    int code = 0;
    auto c = Connection::connect(socket, "other-uid");
    if (!c) ::_exit(101);
    Message m;
    m.type = attach;
    m.name = "secret";
    auto r = c->call(m);
    if (!r) ::_exit(102);
    if (r->message.type == MsgType::Error && r->message.code == ErrorCode::Denied) code |= 1;
    if (r->message.type == MsgType::Attached && r->fds.size() == 2) code |= 2;
    if (::open(ring.c_str(), O_RDONLY) < 0 && errno == EACCES) code |= 4;
    ::_exit(code);
  }
  return wait_exit(pid);
}

TEST_F(Daemon, UidWithoutRightsIsRefused) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to switch to another uid";
  start();
  if (!nobody_can_reach(socket_))
    GTEST_SKIP() << "uid 65534 cannot reach " << socket_ << " (a directory on the way is closed)";
  Connection c = connect();
  auto req = create_request("secret");
  req.acl.consumer_users = {65533};
  ASSERT_EQ(c.call(req)->message.type, MsgType::Ok);
  const std::string ring = root_ + "/" + bus_ + "/secret.0.log";

  // nobody (65534): not named by the ACL.
  EXPECT_EQ(probe_as(65534, 65534, socket_, ring, MsgType::AttachConsumer), 1 | 4);
  EXPECT_EQ(probe_as(65534, 65534, socket_, ring, MsgType::AttachProducer), 1 | 4);
  // 65533 may consume, not produce; the files stay closed to it either way.
  EXPECT_EQ(probe_as(65533, 65533, socket_, ring, MsgType::AttachConsumer), 2 | 4);
  EXPECT_EQ(probe_as(65533, 65533, socket_, ring, MsgType::AttachProducer), 1 | 4);
}

// The ACL sees the groups a client had when it connected (the socket's
// credentials), not the ones /proc shows when the daemon gets round to it:
// a client that joins the granted group only after connect() is refused, one
// that had it at connect() is granted. The daemon is stopped while the client
// connects and changes its groups, so that it accepts afterwards.
TEST_F(Daemon, AclUsesTheGroupsOfTheConnectionNotOfProc) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to switch to another uid";
  start();
  if (!nobody_can_reach(socket_))
    GTEST_SKIP() << "uid 65534 cannot reach " << socket_ << " (a directory on the way is closed)";
  constexpr gid_t kGranted = 65530;
  {
    Connection c = connect();
    auto req = create_request("secret");
    req.acl.consumer_groups = {kGranted};
    ASSERT_EQ(c.call(req)->message.type, MsgType::Ok);
  }
  // Exit code: 1 Denied, 2 Attached, >= 100 a step of the child failed.
  auto attach_as_nobody = [&](bool group_at_connect) {
    int ready[2];
    EXPECT_EQ(::pipe(ready), 0);
    EXPECT_EQ(::kill(pid_, SIGSTOP), 0);
    const pid_t child = ::fork();
    if (child == 0) {
      const gid_t before[1] = {group_at_connect ? kGranted : gid_t{65534}};
      const gid_t after[1] = {kGranted};
      if (::setgroups(1, before) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
          ::setresuid(65534, 65534, 0) != 0)  // saved uid 0: may become root again
        ::_exit(100);
      auto c = Connection::connect(socket_, "");  // no Hello: the daemon is stopped
      if (!c) ::_exit(101);
      if (::setresuid(-1, 0, -1) != 0 || ::setgroups(1, after) != 0 ||
          ::setresuid(65534, 65534, 65534) != 0)
        ::_exit(102);
      (void)!::write(ready[1], "x", 1);
      Message hello;
      hello.type = MsgType::Hello;
      hello.name = "late-group";
      if (auto h = c->call(hello); !h || h->message.type == MsgType::Error) ::_exit(105);
      Message m;
      m.type = MsgType::AttachConsumer;
      m.name = "secret";
      auto r = c->call(m);
      if (!r) ::_exit(103);
      if (r->message.type == MsgType::Error && r->message.code == ErrorCode::Denied) ::_exit(1);
      ::_exit(r->message.type == MsgType::Attached ? 2 : 104);
    }
    char x;
    ::close(ready[1]);
    const bool got = ::read(ready[0], &x, 1) == 1;
    ::close(ready[0]);
    ::kill(pid_, SIGCONT);
    const int code = wait_exit(child);
    EXPECT_TRUE(got) << "child exit " << code;
    return code;
  };
  EXPECT_EQ(attach_as_nobody(false), 1) << "joined the group after connecting";
  EXPECT_EQ(attach_as_nobody(true), 2) << "in the group when it connected";
}

// DescribeTopic and ListTopics apply the topic's ACL: a uid that may not
// attach to a topic is not told about it (Denied; left out of the list),
// and sees the topics it may attach to.
TEST_F(Daemon, DescribeAndListShowOnlyWhatThePeerMayAttachTo) {
  if (::getuid() != 0) GTEST_SKIP() << "needs root to switch to another uid";
  start();
  if (!nobody_can_reach(socket_))
    GTEST_SKIP() << "uid 65534 cannot reach " << socket_ << " (a directory on the way is closed)";
  {
    Connection c = connect();
    auto secret = create_request("secret");
    secret.acl.consumer_users = {65533};
    ASSERT_EQ(c.call(secret)->message.type, MsgType::Ok);
    auto open = create_request("open");
    open.acl.consumer_users = {65534};
    ASSERT_EQ(c.call(open)->message.type, MsgType::Ok);
    Message list;
    list.type = MsgType::ListTopics;
    EXPECT_EQ(c.call(list)->message.names, (std::vector<std::string>{"open", "secret"}))
        << "root sees everything";
  }
  // Exit code bits: 1 secret described, 2 secret Denied, 4 open described,
  // 8 the list is exactly {open}; >= 100 a step failed.
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(100);
    auto c = Connection::connect(socket_, "nobody");
    if (!c) ::_exit(101);
    int code = 0;
    auto r = c->call(named(MsgType::DescribeTopic, "secret"));
    if (!r) ::_exit(102);
    if (r->message.type == MsgType::Described) code |= 1;
    if (r->message.type == MsgType::Error && r->message.code == ErrorCode::Denied) code |= 2;
    r = c->call(named(MsgType::DescribeTopic, "open"));
    if (!r) ::_exit(103);
    if (r->message.type == MsgType::Described) code |= 4;
    Message list;
    list.type = MsgType::ListTopics;
    r = c->call(list);
    if (!r) ::_exit(104);
    if (r->message.names == std::vector<std::string>{"open"}) code |= 8;
    ::_exit(code);
  }
  EXPECT_EQ(wait_exit(child), 2 | 4 | 8);
}

// kill -9 of a producer stopped inside a claim: the daemon pads over the
// claim and the consumer moves on. Measures kill -> next message received.
TEST_F(Daemon, KilledProducerInsideClaimIsPaddedByTheDaemon) {
  start();
  Connection c = connect();
  ASSERT_EQ(c.call(create_request("k"))->message.type, MsgType::Ok);
  auto producer = Producer::open(bus_, "k");
  ASSERT_TRUE(producer) << producer.error().message;
  ConsumerOptions co;
  co.wait = WaitStrategy::BusySpin;
  auto consumer = Consumer::open(bus_, "k", co);
  ASSERT_TRUE(consumer) << consumer.error().message;

  constexpr int kKills = 200;  // 100 measured end to end, 100 split
  std::vector<double> us, exit_us, after_exit_us;
  for (int i = 0; i < kKills; ++i) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(ready[0]);
      auto conn = Connection::connect(socket_, "stuck-producer");
      if (!conn) ::_exit(1);
      Message a;
      a.type = MsgType::AttachProducer;
      a.name = "k";
      auto r = conn->call(a);
      if (!r || r->message.type != MsgType::Attached) ::_exit(2);
      auto p = Producer::open("test", "k");
      if (!p) ::_exit(3);
      Claim claim;
      if (p->claim(16, claim) != Status::Ok) ::_exit(4);
      const char one = 1;
      if (::write(ready[1], &one, 1) != 1) ::_exit(5);
      for (;;) ::pause();  // stopped inside the claim
    }
    ::close(ready[1]);
    char byte = 0;
    ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "child failed";
    ::close(ready[0]);

    const std::string text = "after-" + std::to_string(i);
    ASSERT_EQ(producer->offer(std::as_bytes(std::span(text.data(), text.size()))), Status::Ok);
    std::string got;
    auto handler = [&](const shmbus::Message& m) {
      got.assign(reinterpret_cast<const char*>(m.payload.data()), m.payload.size());
    };
    (void)consumer->poll(handler, 16);
    ASSERT_TRUE(got.empty()) << "the consumer must wait at the open claim";

    // Even rounds: the consumer spins from the kill on (what a consumer sees).
    // Odd rounds: first wait for the kernel to finish the exit (pidfd), to
    // split the time into the kernel's part and the daemon's.
    const bool split = i % 2 == 1;
    const int pidfd = split ? static_cast<int>(::syscall(SYS_pidfd_open, child, 0)) : -1;
    const auto t0 = Clock::now();
    ::kill(child, SIGKILL);
    auto texit = t0;
    if (split) {
      pollfd pf{pidfd, POLLIN, 0};
      (void)::poll(&pf, 1, 10000);
      texit = Clock::now();
      ::close(pidfd);
    }
    // A SpinYield consumer: on this 2-core box a pure spinner would take the
    // dying process's CPU from it (the kernel's exit path needs a CPU too).
    while (got.empty() && Clock::now() - t0 < 10s) {
      if (consumer->poll(handler, 16).count == 0) std::this_thread::yield();
    }
    const auto t1 = Clock::now();
    EXPECT_EQ(wait_exit(child), 128 + SIGKILL);
    ASSERT_EQ(got, text) << "kill " << i << ": the consumer did not move on";
    auto micros = [](auto d) { return std::chrono::duration<double, std::micro>(d).count(); };
    if (split) {
      exit_us.push_back(micros(texit - t0));
      after_exit_us.push_back(micros(t1 - texit));
    } else {
      us.push_back(micros(t1 - t0));
    }
  }
  auto report = [](const char* what, std::vector<double>& v) {
    std::sort(v.begin(), v.end());
    std::printf("%s (%zu kills): median %.1f us, max %.1f us\n", what, v.size(), v[v.size() / 2],
                v.back());
  };
  report("kill -9 -> consumer receives the next message, SpinYield consumer", us);
  report("  split: kill -9 -> process exited (pidfd readable)", exit_us);
  report("  split: process exited -> consumer receives (daemon wake + pad)", after_exit_us);
  ::testing::Test::RecordProperty("kill_to_recovery_median_us", std::to_string(us[us.size() / 2]));
  ::testing::Test::RecordProperty("kill_to_recovery_max_us", std::to_string(us.back()));
  Message s;
  s.type = MsgType::Stats;
  auto r = c.call(s);
  ASSERT_TRUE(r);
  EXPECT_GE(r->message.stats.reaped_producers, static_cast<std::uint64_t>(kKills));
}

// What the stream's processes and the test share (an anonymous shared page).
struct StreamState {
  std::atomic<std::uint64_t> sent;        // producers: messages committed (the next seq)
  std::atomic<std::uint64_t> received;    // consumer: messages checked
  std::atomic<std::uint64_t> total;       // test: the consumer stops after this many (0: not yet)
  std::atomic<std::uint32_t> hold_claim;  // test -> producer: claim, then stop inside it
  std::atomic<std::uint32_t> holding;     // producer -> test: stopped inside the claim
};

// A producer process: publishes seq `sent`, `sent`+1, ... (paced) until
// `until`, or until told to stop inside a claim. Never returns.
[[noreturn]] void stream_producer(StreamState& st, std::uint64_t until) {
  auto p = Producer::open("test", "stream");
  if (!p) {
    std::fprintf(stderr, "producer: %s\n", p.error().message.c_str());
    ::_exit(2);
  }
  std::vector<std::byte> msg;
  for (std::uint64_t seq = st.sent.load(); seq < until; ++seq) {
    if (st.hold_claim.load() != 0) {
      Claim claim;
      while (p->claim(16, claim) != Status::Ok) std::this_thread::yield();
      st.holding.store(1);
      for (;;) ::pause();  // stopped inside the claim
    }
    testing::make_message(0, seq, 200, msg);
    Status s;
    while ((s = p->offer(msg)) == Status::Full) std::this_thread::yield();
    if (s != Status::Ok) ::_exit(3);
    st.sent.store(seq + 1);
    if (seq % 8 == 0) std::this_thread::sleep_for(50us);  // a stream, not a burst
  }
  ::_exit(0);
}

// The consumer process: checks every message (sender, order, checksum)
// until `total` are in. Exit 0 when all checked; 1 on a bad one, 3 on time out.
[[noreturn]] void stream_consumer(StreamState& st) {
  ConsumerOptions o;
  o.start = ConsumerOptions::Start::Earliest;
  auto c = Consumer::open("test", "stream", o);
  if (!c) {
    std::fprintf(stderr, "consumer: %s\n", c.error().message.c_str());
    ::_exit(2);
  }
  std::uint64_t next = 0;
  std::string failure;
  auto handler = [&](const shmbus::Message& m) {
    testing::CheckHeader h;
    if (!failure.empty()) return;
    if (!testing::check_message(m.payload, h) || h.producer != 0)
      failure = "damaged message at position " + std::to_string(m.position);
    else if (h.seq != next)
      failure = "got seq " + std::to_string(h.seq) + ", expected " + std::to_string(next);
    else
      st.received.store(++next);
  };
  const auto deadline = Clock::now() + 120s;
  while (failure.empty() && (st.total.load() == 0 || next < st.total.load())) {
    const PollResult r = c->poll_wait(handler, 64, 50ms);
    if (r.status != Status::Ok && r.status != Status::Timeout)
      failure = std::string("poll: ") + to_string(r.status);
    if (Clock::now() > deadline) {
      std::fprintf(stderr, "consumer: timed out at %llu\n", static_cast<unsigned long long>(next));
      ::_exit(3);
    }
  }
  if (!failure.empty()) std::fprintf(stderr, "consumer FAILED: %s\n", failure.c_str());
  ::_exit(failure.empty() && next == st.total.load() ? 0 : 1);
}

// kill -9 of shmbusd while a producer and a consumer process exchange a
// counted stream: traffic goes on; a restarted daemon adopts the topic
// created over the socket, reaps a producer that died while no daemon ran,
// takes back the clients (which reconnect by themselves), and pads the claim
// of a producer killed inside it, so the consumer moves on. Every message
// arrives once, in order, intact.
TEST_F(Daemon, KilledDaemonRestartsAndLosesNothing) {
  start();
  ::setenv("SHMBUS_SOCKET", socket_.c_str(), 1);
  auto* st = static_cast<StreamState*>(::mmap(nullptr, sizeof(StreamState), PROT_READ | PROT_WRITE,
                                              MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(st, MAP_FAILED);
  new (st) StreamState{};
  Connection c = connect();
  ASSERT_EQ(c.call(create_request("stream"))->message.type, MsgType::Ok);
  ASSERT_EQ(c.call(create_request("quiet"))->message.type, MsgType::Ok);
  auto describe = [&](Connection& conn, const char* topic) {
    auto r = conn.call(named(MsgType::DescribeTopic, topic));
    EXPECT_TRUE(r && r->message.type == MsgType::Described);
    return r && r->message.type == MsgType::Described ? r->message.partitions.at(0)
                                                      : PartitionStat{0, 99, 99};
  };
  auto stats = [](Connection& conn) {
    Message m;
    m.type = MsgType::Stats;
    auto r = conn.call(m);
    EXPECT_TRUE(r && r->message.type == MsgType::StatsReply);
    return r ? r->message.stats : DaemonStats{};
  };
  auto wait_for = [](auto done, std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    while (!done() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    return done();
  };
  std::vector<pid_t> children;
  struct KillLeftovers {  // a failed assertion must not leave the stream running
    std::vector<pid_t>& pids;
    ~KillLeftovers() {
      for (pid_t pid : pids)
        if (::waitpid(pid, nullptr, WNOHANG) == 0) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, nullptr, 0);
        }
    }
  } kill_leftovers{children};
  auto spawn_child = [&](auto body) {
    const pid_t pid = ::fork();
    if (pid == 0) body();
    children.push_back(pid);
    return pid;
  };

  const pid_t consumer = spawn_child([&] { stream_consumer(*st); });
  ASSERT_TRUE(wait_for([&] { return describe(c, "stream").consumers == 1; }, 20s));
  pid_t producer = spawn_child([&] { stream_producer(*st, UINT64_MAX); });
  // A producer on another topic that stops inside a claim; it dies while no daemon runs.
  const pid_t stuck = spawn_child([&] {
    auto p = Producer::open("test", "quiet");
    Claim claim;
    if (!p || p->claim(16, claim) != Status::Ok) ::_exit(2);
    for (;;) ::pause();
  });
  ASSERT_TRUE(wait_for([&] { return st->received.load() >= 1000; }, 20s));
  ASSERT_TRUE(wait_for([&] { return describe(c, "quiet").producers == 1; }, 20s));
  EXPECT_EQ(stats(c).clients, 4u) << "this test, the producer, the consumer, the stuck producer";

  ::kill(pid_, SIGKILL);
  EXPECT_EQ(wait_exit(pid_), 128 + SIGKILL);
  pid_ = -1;
  ::kill(stuck, SIGKILL);
  EXPECT_EQ(wait_exit(stuck), 128 + SIGKILL);
  const std::uint64_t at_kill = st->received.load();
  ASSERT_TRUE(wait_for([&] { return st->received.load() >= at_kill + 2000; }, 20s))
      << "traffic must go on without the daemon: " << st->received.load() - at_kill
      << " messages after the kill";
  std::printf("without a daemon: %llu messages went through\n",
              static_cast<unsigned long long>(st->received.load() - at_kill));

  start();
  Connection again = connect();
  // Adopted: the topics created over the socket are served again.
  Message list;
  list.type = MsgType::ListTopics;
  auto listed = again.call(list);
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->message.names, (std::vector<std::string>{"quiet", "stream"}));
  // The producer that died while no daemon ran was reaped at start.
  EXPECT_EQ(describe(again, "quiet").producers, 0u);
  EXPECT_EQ(stats(again).reaped_producers, 1u);
  // The stream's clients reconnect and re-announce their slots by themselves.
  const auto t0 = Clock::now();
  const std::string announced[] = {
      "pid " + std::to_string(producer) + " re-announced its producer slot in stream.0",
      "pid " + std::to_string(consumer) + " re-announced its consumer slot in stream.0"};
  ASSERT_TRUE(wait_for(
      [&] {
        const std::string log = slurp(dir_ + "/daemon.log");
        return log.find(announced[0]) != std::string::npos &&
               log.find(announced[1]) != std::string::npos;
      },
      10s))
      << slurp(dir_ + "/daemon.log");
  std::printf("clients re-announced %.1f ms after the restarted daemon answered\n",
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  // Their connections stay: this test's, the producer's, the consumer's.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(stats(again).clients, 3u);
    std::this_thread::sleep_for(10ms);
  }
  const PartitionStat p = describe(again, "stream");
  EXPECT_EQ(p.producers, 1u);
  EXPECT_EQ(p.consumers, 1u);
  const std::uint64_t at_restart = st->received.load();
  ASSERT_TRUE(wait_for([&] { return st->received.load() >= at_restart + 1000; }, 20s));

  // Stop the producer inside a claim: the consumer waits there.
  st->hold_claim.store(1);
  ASSERT_TRUE(wait_for([&] { return st->holding.load() == 1; }, 20s));
  ASSERT_TRUE(wait_for([&] { return st->received.load() == st->sent.load(); }, 20s));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(st->received.load(), st->sent.load());
  // kill -9 inside the claim: the restarted daemon pads it.
  ::kill(producer, SIGKILL);
  EXPECT_EQ(wait_exit(producer), 128 + SIGKILL);
  ASSERT_TRUE(wait_for([&] { return stats(again).reaped_producers == 2; }, 10s))
      << slurp(dir_ + "/daemon.log");
  EXPECT_EQ(describe(again, "stream").producers, 0u);

  // A new producer goes on from the next seq; the consumer gets past the pad.
  const std::uint64_t total = st->sent.load() + 5000;
  st->total.store(total);
  st->hold_claim.store(0);
  producer = spawn_child([&] { stream_producer(*st, total); });
  EXPECT_EQ(wait_exit(producer), 0);
  EXPECT_EQ(wait_exit(consumer), 0) << "the consumer must get every message once, in order";
  EXPECT_EQ(st->received.load(), total);
  std::printf("%llu messages, each once and in order, across a daemon kill and restart\n",
              static_cast<unsigned long long>(total));
  ::unsetenv("SHMBUS_SOCKET");
  ::munmap(st, sizeof(StreamState));
}

// kill -9 of a consumer: the daemon frees its cursor slot at once, so it no
// longer holds back producers on a `block` topic.
TEST_F(Daemon, KilledConsumerSlotIsFreedByTheDaemon) {
  start();
  Connection c = connect();
  ASSERT_EQ(c.call(create_request("kc"))->message.type, MsgType::Ok);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(ready[0]);
    auto conn = Connection::connect(socket_, "consumer");
    if (!conn) ::_exit(1);
    auto r = conn->call(named(MsgType::AttachConsumer, "kc"));
    if (!r || r->message.type != MsgType::Attached) ::_exit(2);
    auto consumer = Consumer::open("test", "kc");
    if (!consumer) ::_exit(3);
    const char one = 1;
    if (::write(ready[1], &one, 1) != 1) ::_exit(4);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  auto consumers = [&] {
    auto r = c.call(named(MsgType::DescribeTopic, "kc"));
    return r && r->message.type == MsgType::Described ? r->message.partitions.at(0).consumers : 99u;
  };
  EXPECT_EQ(consumers(), 1u);
  ::kill(child, SIGKILL);
  EXPECT_EQ(wait_exit(child), 128 + SIGKILL);
  const auto t0 = Clock::now();
  while (consumers() != 0 && Clock::now() - t0 < 10s) std::this_thread::sleep_for(100us);
  EXPECT_EQ(consumers(), 0u);
  Message s;
  s.type = MsgType::Stats;
  auto r = c.call(s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.stats.reaped_consumers, 1u);
}

// A slot holder that never reconnects (it attached by hand, without the
// client library's link) is found by the restarted daemon in the slots and
// watched through a pidfd: when it dies, its cursor slot is freed.
TEST_F(Daemon, RestartedDaemonWatchesSlotHoldersItFindsInSharedMemory) {
  start();
  Connection c = connect();
  ASSERT_EQ(c.call(create_request("held"))->message.type, MsgType::Ok);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(ready[0]);
    auto consumer = Consumer::open("test", "held");  // the embedded path: no link
    if (!consumer) ::_exit(3);
    const char one = 1;
    if (::write(ready[1], &one, 1) != 1) ::_exit(4);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  ::kill(pid_, SIGKILL);
  EXPECT_EQ(wait_exit(pid_), 128 + SIGKILL);
  pid_ = -1;
  start();
  Connection again = connect();
  auto consumers = [&] {
    auto r = again.call(named(MsgType::DescribeTopic, "held"));
    return r && r->message.type == MsgType::Described ? r->message.partitions.at(0).consumers : 99u;
  };
  EXPECT_EQ(consumers(), 1u) << "alive: adopted, not reaped";
  EXPECT_NE(slurp(dir_ + "/daemon.log").find("watching 1 process(es)"), std::string::npos)
      << slurp(dir_ + "/daemon.log");
  ::kill(child, SIGKILL);
  EXPECT_EQ(wait_exit(child), 128 + SIGKILL);
  const auto t0 = Clock::now();
  while (consumers() != 0 && Clock::now() - t0 < 10s) std::this_thread::sleep_for(100us);
  EXPECT_EQ(consumers(), 0u) << slurp(dir_ + "/daemon.log");
  Message s;
  s.type = MsgType::Stats;
  auto r = again.call(s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.stats.reaped_consumers, 1u);
  EXPECT_EQ(r->message.stats.clients, 1u) << "a watched holder is not a connected client";
}

// The median and the maximum of `v`, sorted in place, printed and recorded.
void report_ms(const char* what, const char* property, std::vector<double>& v) {
  std::sort(v.begin(), v.end());
  std::printf("%s (%zu runs): median %.2f ms, max %.2f ms\n", what, v.size(), v[v.size() / 2],
              v.back());
  ::testing::Test::RecordProperty(std::string(property) + "_median_ms",
                                  std::to_string(v[v.size() / 2]));
  ::testing::Test::RecordProperty(std::string(property) + "_max_ms", std::to_string(v.back()));
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// A producer stopped (SIGSTOP, alive) inside a claim: after the topic's
// hung_producer_timeout the daemon revokes the claim and the consumer moves
// on; continued (SIGCONT), the producer writes the rest of its payload into
// the revoked frame, its commit returns Revoked, and it publishes again. The
// consumer sees every message once, intact, and never the revoked one.
// Measures the claim's timeout expiry -> the consumer receives the next message.
TEST_F(Daemon, HungProducerClaimIsRevokedAfterTheTimeout) {
  start();
  Connection c = connect();
  constexpr std::uint32_t kTimeoutMs = 100;
  auto req = create_request("h");
  req.options.hung_producer_timeout_ms = kTimeoutMs;
  ASSERT_EQ(c.call(req)->message.type, MsgType::Ok);
  auto producer = Producer::open(bus_, "h");
  ASSERT_TRUE(producer) << producer.error().message;
  auto consumer = Consumer::open(bus_, "h");
  ASSERT_TRUE(consumer) << consumer.error().message;
  std::vector<std::string> got;
  auto handler = [&](const shmbus::Message& m) {
    got.emplace_back(reinterpret_cast<const char*>(m.payload.data()), m.payload.size());
  };
  auto poll_until = [&](std::size_t n) {
    const auto t0 = Clock::now();
    while (got.size() < n && Clock::now() - t0 < 10s)
      if (consumer->poll(handler, 16).count == 0) std::this_thread::yield();
  };

  constexpr int kRuns = 20;
  std::vector<double> lag;
  for (int i = 0; i < kRuns; ++i) {
    const std::string after = "after-" + std::to_string(i), late = "late-" + std::to_string(i);
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(ready[0]);
      auto p = Producer::open("test", "h");
      if (!p) ::_exit(3);
      Claim claim;
      if (p->claim(64, claim) != Status::Ok) ::_exit(4);
      std::memset(claim.payload.data(), 'h', 32);
      if (::write(ready[1], "1", 1) != 1) ::_exit(5);
      ::raise(SIGSTOP);                                              // hung inside its claim
      std::memset(claim.payload.data(), 'X', claim.payload.size());  // late stores
      const Status s = p->commit(claim);
      if (s != Status::Revoked) ::_exit(10 + static_cast<int>(s));
      if (p->offer(std::as_bytes(std::span(late.data(), late.size()))) != Status::Ok) ::_exit(6);
      ::_exit(0);
    }
    ::close(ready[1]);
    char byte = 0;
    ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "child failed";
    const auto claimed = Clock::now();
    ::close(ready[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, WUNTRACED), child);
    ASSERT_TRUE(WIFSTOPPED(status));

    ASSERT_EQ(producer->offer(std::as_bytes(std::span(after.data(), after.size()))), Status::Ok);
    got.clear();
    (void)consumer->poll(handler, 16);
    ASSERT_TRUE(got.empty()) << "the consumer must wait at the open claim";
    poll_until(1);
    lag.push_back(ms_since(claimed) - kTimeoutMs);
    ASSERT_EQ(got, std::vector<std::string>{after}) << "run " << i;
    EXPECT_GT(lag.back(), -5.0) << "revoked long before the timeout";

    ::kill(child, SIGCONT);
    EXPECT_EQ(wait_exit(child), 0) << "10 + Status: its commit did not report Revoked";
    poll_until(2);
    EXPECT_EQ(got, (std::vector<std::string>{after, late})) << "run " << i;
  }
  report_ms("hung producer: timeout expiry -> consumer receives the next message", "revoke", lag);
  Message s;
  s.type = MsgType::Stats;
  auto r = c.call(s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.stats.revoked_claims, static_cast<std::uint64_t>(kRuns));
}

// A consumer stopped (SIGSTOP) on a full `block` topic: after the topic's
// slow_consumer_timeout the daemon evicts it and the producer moves on;
// continued, the consumer's poll returns Evicted before handing anything
// over, and after rejoin() it receives new messages. Measures the ring
// filling up (first Full) + the timeout -> the producer's next Ok.
TEST_F(Daemon, SlowConsumerIsEvictedAfterTheTimeout) {
  start();
  Connection c = connect();
  constexpr std::uint32_t kTimeoutMs = 100;
  auto req = create_request("s");
  req.options.slow_consumer_timeout_ms = kTimeoutMs;
  ASSERT_EQ(c.call(req)->message.type, MsgType::Ok);
  auto producer = Producer::open(bus_, "s");
  ASSERT_TRUE(producer) << producer.error().message;
  const std::string m(40, 's');
  const auto payload = std::as_bytes(std::span(m.data(), m.size()));

  constexpr int kRuns = 20;
  std::vector<double> lag;
  for (int i = 0; i < kRuns; ++i) {
    const std::string fresh = "fresh-" + std::to_string(i);
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t child = ::fork();
    if (child == 0) {
      ::close(ready[0]);
      auto consumer = Consumer::open("test", "s");
      if (!consumer) ::_exit(3);
      if (::write(ready[1], "1", 1) != 1) ::_exit(4);
      ::raise(SIGSTOP);  // too slow
      int handed = 0;
      auto count = [&](const shmbus::Message&) { ++handed; };
      const PollResult r = consumer->poll(count, 64);
      if (r.status != Status::Evicted || r.count != 0 || handed != 0) ::_exit(10);
      if (!consumer->rejoin()) ::_exit(11);
      if (::write(ready[1], "2", 1) != 1) ::_exit(12);
      std::string got;
      const PollResult n = consumer->poll_wait(
          [&](const shmbus::Message& msg) {
            got.assign(reinterpret_cast<const char*>(msg.payload.data()), msg.payload.size());
          },
          1, 10s);
      ::_exit(n.status == Status::Ok && got == fresh ? 0 : 13);
    }
    ::close(ready[1]);
    char byte = 0;
    ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "child failed";
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, WUNTRACED), child);
    ASSERT_TRUE(WIFSTOPPED(status));

    Status st;
    while ((st = producer->offer(payload)) == Status::Ok) {
    }
    ASSERT_EQ(st, Status::Full);
    const auto full = Clock::now();
    while ((st = producer->offer(payload)) == Status::Full && Clock::now() - full < 10s)
      std::this_thread::yield();
    ASSERT_EQ(st, Status::Ok) << "run " << i << ": the producer did not move on";
    lag.push_back(ms_since(full) - kTimeoutMs);
    EXPECT_GT(lag.back(), -5.0) << "evicted long before the timeout";

    ::kill(child, SIGCONT);
    ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the child did not rejoin";
    ::close(ready[0]);
    ASSERT_EQ(producer->offer(std::as_bytes(std::span(fresh.data(), fresh.size()))), Status::Ok);
    EXPECT_EQ(wait_exit(child), 0) << "10: not Evicted, 11: rejoin failed, 13: no message";
  }
  report_ms("slow consumer: timeout expiry -> producer's next offer succeeds", "evict", lag);
  Message s;
  s.type = MsgType::Stats;
  auto r = c.call(s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.stats.evicted_consumers, static_cast<std::uint64_t>(kRuns));
}

// The public API goes through the daemon when its socket exists: Producer
// and Consumer get their descriptors from shmbusd (the consumer's log
// read-only), messages flow, and a uid the ACL does not name is refused by
// the daemon with its reason.
TEST_F(Daemon, ClientLibraryAttachesThroughTheDaemon) {
  start();
  ::setenv("SHMBUS_SOCKET", socket_.c_str(), 1);
  Connection c = connect();
  ASSERT_EQ(c.call(create_request("api"))->message.type, MsgType::Ok);
  auto consumer = shmbus::Consumer::open(bus_, "api");
  ASSERT_TRUE(consumer) << consumer.error().message;
  auto producer = shmbus::Producer::open(bus_, "api");
  ASSERT_TRUE(producer) << producer.error().message;
  const std::string text = "through the daemon";
  ASSERT_EQ(producer->offer(std::as_bytes(std::span(text.data(), text.size()))),
            shmbus::Status::Ok);
  std::string got;
  auto r = consumer->poll_wait(
      [&](const shmbus::Message& m) {
        got.assign(reinterpret_cast<const char*>(m.payload.data()), m.payload.size());
      },
      1, 5s);
  EXPECT_EQ(r.status, shmbus::Status::Ok);
  EXPECT_EQ(got, text);
  auto stats = c.call([] {
    Message m;
    m.type = MsgType::Stats;
    return m;
  }());
  ASSERT_TRUE(stats);
  EXPECT_GE(stats->message.stats.clients, 3u) << "this test, the producer and the consumer";

  if (::getuid() != 0 || !nobody_can_reach(socket_)) {
    ::unsetenv("SHMBUS_SOCKET");
    GTEST_SKIP() << "the other-uid half needs root and a socket path uid 65534 can reach";
  }
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(100);
    auto refused = shmbus::Consumer::open(bus_, "api");
    if (refused) ::_exit(1);
    ::_exit(refused.error().message.find("refused") != std::string::npos ? 0 : 2);
  }
  EXPECT_EQ(wait_exit(child), 0) << "nobody must be refused, by the daemon, with its reason";
  ::unsetenv("SHMBUS_SOCKET");
}

// Topic::create and Topic::remove are requests to a running daemon: the
// topic enters its catalogue (ListTopics) and leaves it, and a second create
// reports the daemon's refusal with EEXIST.
TEST_F(Daemon, TopicApiGoesThroughTheDaemon) {
  start();
  ::setenv("SHMBUS_SOCKET", socket_.c_str(), 1);
  shmbus::TopicOptions o;
  o.segment_bytes = 4096;
  o.segment_count = 4;
  auto made = shmbus::Topic::create(bus_, "via-api", o);
  ASSERT_TRUE(made) << made.error().message;
  auto again = shmbus::Topic::create(bus_, "via-api", o);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, EEXIST);
  EXPECT_NE(again.error().message.find("shmbusd"), std::string::npos) << again.error().message;
  Connection c = connect();
  Message list;
  list.type = MsgType::ListTopics;
  auto listed = c.call(list);
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->message.names, std::vector<std::string>{"via-api"});
  auto removed = shmbus::Topic::remove(bus_, "via-api");
  ASSERT_TRUE(removed) << removed.error().message;
  listed = c.call(list);
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->message.names.empty());
  auto missing = shmbus::Topic::remove(bus_, "via-api");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);

  // CallerNode is decided on the caller's side; options the daemon does not
  // take are refused, not dropped.
  shmbus::TopicOptions near = o;
  near.placement.kind = shmbus::Placement::Kind::CallerNode;
  ASSERT_TRUE(shmbus::Topic::create(bus_, "near", near));
  auto described = c.call(named(MsgType::DescribeTopic, "near"));
  ASSERT_TRUE(described);
  EXPECT_GE(described->message.numa_node, 0) << "a node, not anywhere";
  shmbus::TopicOptions huge = o;
  huge.huge_pages = true;
  auto refused = shmbus::Topic::create(bus_, "huge", huge);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, EINVAL);
  EXPECT_NE(refused.error().message.find("huge_pages"), std::string::npos);
  ::unsetenv("SHMBUS_SOCKET");
}

// Each Producer and Consumer attaches over a connection of its own, which
// closing it closes: a process that opens and closes them again and again
// leaves the daemon's descriptors and its count of clients where they were.
TEST_F(Daemon, ClosedProducersAndConsumersLeaveNothingInTheDaemon) {
  start();
  ::setenv("SHMBUS_SOCKET", socket_.c_str(), 1);
  Connection c = connect();
  ASSERT_EQ(c.call(create_request("churn"))->message.type, MsgType::Ok);
  const std::size_t fds_before = open_fds(pid_);
  const std::uint32_t clients_before = stats_of(c).clients;
  for (int i = 0; i < 200; ++i) {
    auto consumer = Consumer::open(bus_, "churn");
    ASSERT_TRUE(consumer) << "consumer " << i << ": " << consumer.error().message;
  }
  for (int i = 0; i < 20; ++i) {
    auto producer = Producer::open(bus_, "churn");
    ASSERT_TRUE(producer) << "producer " << i << ": " << producer.error().message;
  }
  EXPECT_TRUE(wait_until([&] { return stats_of(c).clients == clients_before; }, 5s))
      << stats_of(c).clients << " clients, " << clients_before << " before";
  EXPECT_TRUE(wait_until([&] { return open_fds(pid_) == fds_before; }, 5s))
      << open_fds(pid_) << " descriptors open in shmbusd, " << fds_before << " before";
}

// A child forked without exec closes its copies of its parent's control
// connections: the daemon sees the parent's consumer leave when the parent
// closes it, not when the child exits.
TEST_F(Daemon, ForkedChildDoesNotKeepItsParentsConnectionsOpen) {
  start();
  ::setenv("SHMBUS_SOCKET", socket_.c_str(), 1);
  Connection c = connect();
  ASSERT_EQ(c.call(create_request("forked"))->message.type, MsgType::Ok);
  const std::uint32_t clients_before = stats_of(c).clients;
  pid_t child = -1;
  {
    auto consumer = Consumer::open(bus_, "forked");
    ASSERT_TRUE(consumer) << consumer.error().message;
    EXPECT_EQ(stats_of(c).clients, clients_before + 1);
    child = ::fork();
    if (child == 0)
      for (;;) ::pause();
  }
  EXPECT_TRUE(wait_until([&] { return stats_of(c).clients == clients_before; }, 5s))
      << "the child keeps its parent's connection to shmbusd open";
  ::kill(child, SIGKILL);
  EXPECT_EQ(wait_exit(child), 128 + SIGKILL);
}

// A consumer evicted for being slow still holds its slot (Evicted) until it
// leaves: a daemon restarted meanwhile watches it and takes its
// re-announcement, and frees the slot when the consumer dies.
TEST_F(Daemon, ConsumerEvictedAcrossARestartIsTakenBack) {
  start();
  ::setenv("SHMBUS_SOCKET", socket_.c_str(), 1);
  Connection c = connect();
  auto req = create_request("ev");
  req.options.slow_consumer_timeout_ms = 100;
  ASSERT_EQ(c.call(req)->message.type, MsgType::Ok);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(ready[0]);
    auto consumer = Consumer::open("test", "ev");  // never polls: slow
    if (!consumer) ::_exit(3);
    if (::write(ready[1], "1", 1) != 1) ::_exit(4);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "child failed";
  ::close(ready[0]);
  {
    auto producer = Producer::open(bus_, "ev");
    ASSERT_TRUE(producer) << producer.error().message;
    const std::string m(40, 'e');
    const auto payload = std::as_bytes(std::span(m.data(), m.size()));
    Status st;
    while ((st = producer->offer(payload)) == Status::Ok) {
    }
    ASSERT_EQ(st, Status::Full);
    ASSERT_TRUE(wait_until([&] { return producer->offer(payload) == Status::Ok; }, 10s))
        << "the consumer was not evicted";
  }
  EXPECT_EQ(stats_of(c).evicted_consumers, 1u);
  ::kill(pid_, SIGKILL);
  EXPECT_EQ(wait_exit(pid_), 128 + SIGKILL);
  pid_ = -1;
  start();
  Connection again = connect();
  EXPECT_NE(slurp(dir_ + "/daemon.log").find("watching 1 process(es)"), std::string::npos)
      << slurp(dir_ + "/daemon.log");
  const std::string announced =
      "pid " + std::to_string(child) + " re-announced its consumer slot in ev.0";
  EXPECT_TRUE(wait_until(
      [&] { return slurp(dir_ + "/daemon.log").find(announced) != std::string::npos; }, 10s))
      << slurp(dir_ + "/daemon.log");
  ::kill(child, SIGKILL);
  EXPECT_EQ(wait_exit(child), 128 + SIGKILL);
  EXPECT_TRUE(wait_until([&] { return stats_of(again).reaped_consumers == 1; }, 10s));
}

// A slot whose topic is gone when the daemon comes back (its files were
// removed while no daemon ran) is re-announced once: the link takes the
// daemon's NotFound as final and stops dialling.
TEST_F(Daemon, LinkStopsReannouncingASlotWhoseTopicIsGone) {
  start();
  ::setenv("SHMBUS_SOCKET", socket_.c_str(), 1);
  ASSERT_EQ(connect().call(create_request("gone"))->message.type, MsgType::Ok);
  auto consumer = Consumer::open(bus_, "gone");
  ASSERT_TRUE(consumer) << consumer.error().message;
  ::kill(pid_, SIGKILL);
  EXPECT_EQ(wait_exit(pid_), 128 + SIGKILL);
  pid_ = -1;
  ASSERT_TRUE(log::remove_topic_files(root_ + "/" + bus_, "gone"));
  start();
  Connection again = connect();
  ASSERT_TRUE(wait_until([&] { return stats_of(again).errors >= 1; }, 10s))
      << "the link did not re-announce the slot";
  const DaemonStats refused = stats_of(again);
  std::this_thread::sleep_for(1500ms);  // three of the link's longest backoffs
  const DaemonStats later = stats_of(again);
  EXPECT_EQ(later.errors, refused.errors) << "the link retries a slot whose topic is gone";
  EXPECT_EQ(later.requests, refused.requests + 1) << "only this Stats request";
}

// A registry topic whose files are damaged, missing or of another geometry
// is quarantined at restart: the daemon logs it naming the file and what is
// wrong, serves the other topics, refuses the quarantined one with how to fix
// it, and deletes it when asked.
TEST_F(Daemon, RestartQuarantinesDamagedTopicsAndServesTheRest) {
  start();
  {
    Connection c = connect();
    for (const char* name : {"good", "damaged", "partial", "resized"})  // registry entries 0..3
      ASSERT_EQ(c.call(create_request(name, 2))->message.type, MsgType::Ok);
  }
  stop();
  const std::string bus_dir = root_ + "/" + bus_;
  {
    std::fstream f(bus_dir + "/damaged.0.log", std::ios::in | std::ios::out | std::ios::binary);
    const std::uint32_t not_magic = 0;
    f.write(reinterpret_cast<const char*>(&not_magic), sizeof not_magic);
  }
  ASSERT_TRUE(std::filesystem::remove(bus_dir + "/partial.1.log"));
  {
    std::fstream f(bus_dir + "/registry", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(256 + 3 * 1536 + 216);  // entry 3 ("resized"): segment_bytes
    const std::uint64_t other = 8192;
    f.write(reinterpret_cast<const char*>(&other), sizeof other);
  }
  start();
  Connection c = connect();
  const std::string log = slurp(dir_ + "/daemon.log");
  EXPECT_NE(log.find("topic damaged is quarantined: " + bus_dir + "/damaged.0.log"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("topic partial is quarantined: " + bus_dir + "/partial.1.log"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("topic resized is quarantined: " + bus_dir +
                     "/resized.0.log exists with another geometry: segment_bytes 4096, not 8192"),
            std::string::npos)
      << log;
  Message list;
  list.type = MsgType::ListTopics;
  EXPECT_EQ(c.call(list)->message.names, std::vector<std::string>{"good"});
  auto r = c.call(named(MsgType::AttachConsumer, "good", 1));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.type, MsgType::Attached) << r->message.text;
  for (const char* name : {"damaged", "partial", "resized"}) {
    for (MsgType t : {MsgType::AttachConsumer, MsgType::AttachProducer, MsgType::DescribeTopic}) {
      r = c.call(named(t, name));
      ASSERT_TRUE(r);
      EXPECT_EQ(r->message.code, ErrorCode::Quarantined) << r->message.text;
      EXPECT_NE(r->message.text.find("topic " + std::string(name) + " is quarantined"),
                std::string::npos)
          << r->message.text;
      EXPECT_NE(r->message.text.find("topic delete " + std::string(name)), std::string::npos)
          << r->message.text;
    }
    r = c.call(named(MsgType::DeleteTopic, name));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->message.type, MsgType::Ok) << r->message.text;
    EXPECT_FALSE(std::filesystem::exists(bus_dir + "/" + name + ".0.log"));
  }
  ASSERT_EQ(c.call(create_request("damaged"))->message.type, MsgType::Ok) << "made again";
  stop();
  start();
  EXPECT_EQ(slurp(dir_ + "/daemon.log").find("quarantined"), std::string::npos)
      << slurp(dir_ + "/daemon.log");
  EXPECT_EQ(connect().call(list)->message.names, (std::vector<std::string>{"damaged", "good"}));
}

// DeleteTopic of a topic the daemon does not serve, whose files were made on
// the embedded path while no daemon ran, removes the files.
TEST_F(Daemon, DeleteRemovesFilesOfATopicTheDaemonDoesNotServe) {
  start();
  TopicOptions o;
  o.partitions = 2;
  o.segment_bytes = 4096;
  o.segment_count = 4;
  const std::string bus_dir = root_ + "/" + bus_;
  ASSERT_TRUE(log::create_topic_files(bus_dir, "orphan", o));
  ASSERT_TRUE(std::filesystem::exists(bus_dir + "/orphan.1.log"));
  Connection c = connect();
  auto r = c.call(named(MsgType::DeleteTopic, "orphan"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.type, MsgType::Ok) << r->message.text;
  EXPECT_FALSE(std::filesystem::exists(bus_dir + "/orphan.0.log"));
  EXPECT_FALSE(std::filesystem::exists(bus_dir + "/orphan.1.log"));
  r = c.call(named(MsgType::DeleteTopic, "orphan"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.code, ErrorCode::NotFound) << r->message.text;
  r = c.call(named(MsgType::DeleteTopic, "../" + bus_ + "/registry"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.code, ErrorCode::Invalid) << r->message.text;
}

// The state of registry entry `name` in the file itself (RegistryEntry:
// state at 0, name_bytes at 4, name at 8), or -1 when no entry has that name
// (Free entries count as none).
int registry_state(const std::string& registry, const std::string& name) {
  const std::string bytes = slurp(registry);
  for (std::size_t at = 256; at + 1536 <= bytes.size(); at += 1536) {
    std::uint32_t state = 0;
    std::uint16_t len = 0;
    std::memcpy(&state, bytes.data() + at, sizeof state);
    std::memcpy(&len, bytes.data() + at + 4, sizeof len);
    if (state != 0 && bytes.compare(at + 8, len, name) == 0 && len == name.size())
      return static_cast<int>(state);
  }
  return -1;
}

std::vector<std::string> files_of(const std::string& dir, const std::string& topic) {
  std::vector<std::string> found;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(topic + ".", 0) == 0) found.push_back(n);
  }
  std::sort(found.begin(), found.end());
  return found;
}

// A partition whose files are already gone stops no delete: the partitions
// after it go too.
TEST_F(Daemon, DeleteRemovesEveryPartitionPastAMissingOne) {
  start();
  Connection c = connect();
  ASSERT_EQ(c.call(create_request("gappy", 3))->message.type, MsgType::Ok);
  const std::string bus_dir = root_ + "/" + bus_;
  ASSERT_TRUE(std::filesystem::remove(bus_dir + "/gappy.1.log"));
  ASSERT_TRUE(std::filesystem::remove(bus_dir + "/gappy.1.cur"));
  auto r = c.call(named(MsgType::DeleteTopic, "gappy"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.type, MsgType::Ok) << r->message.text;
  EXPECT_EQ(files_of(bus_dir, "gappy"), std::vector<std::string>{});
  EXPECT_EQ(registry_state(bus_dir + "/registry", "gappy"), -1);
}

// A delete that fails half-way (here a partition's cursor file replaced by a
// directory, which unlink refuses even to root) removes what it can, keeps
// the topic and its registry entry (Deleting), and says so; deleted again
// once the obstacle is gone, the topic goes entirely and a restarted daemon
// finds nothing half-done.
TEST_F(Daemon, FailedDeleteCanBeRetriedAndLeavesNothingStuck) {
  start();
  Connection c = connect();
  ASSERT_EQ(c.call(create_request("half", 3))->message.type, MsgType::Ok);
  const std::string bus_dir = root_ + "/" + bus_;
  const std::string registry = bus_dir + "/registry";
  ASSERT_EQ(registry_state(registry, "half"), static_cast<int>(EntryState::Live));
  const std::string blocker = bus_dir + "/half.1.cur";
  ASSERT_TRUE(std::filesystem::remove(blocker));
  ASSERT_TRUE(std::filesystem::create_directory(blocker));
  ASSERT_TRUE(std::filesystem::create_directory(blocker + "/inside"));

  auto r = c.call(named(MsgType::DeleteTopic, "half"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.type, MsgType::Error);
  EXPECT_NE(r->message.text.find("half deleted"), std::string::npos) << r->message.text;
  EXPECT_EQ(files_of(bus_dir, "half"), std::vector<std::string>{"half.1.cur"})
      << "everything else is removed";
  EXPECT_EQ(registry_state(registry, "half"), static_cast<int>(EntryState::Deleting));

  std::filesystem::remove_all(blocker);
  r = c.call(named(MsgType::DeleteTopic, "half"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message.type, MsgType::Ok) << r->message.text;
  EXPECT_EQ(files_of(bus_dir, "half"), std::vector<std::string>{});
  EXPECT_EQ(registry_state(registry, "half"), -1);
  Message list;
  list.type = MsgType::ListTopics;
  EXPECT_EQ(c.call(list)->message.names, std::vector<std::string>{});
  stop();
  start();
  EXPECT_EQ(slurp(dir_ + "/daemon.log").find("half-done"), std::string::npos)
      << slurp(dir_ + "/daemon.log");
  EXPECT_EQ(connect().call(create_request("half", 3))->message.type, MsgType::Ok) << "made again";
}

// A creator killed between creating its `<file>.creating.<pid>` and link()ing
// it leaves the temporary (up to a whole topic's size) behind: a starting
// daemon removes it, and leaves a live creator's alone.
TEST_F(Daemon, StartRemovesTemporariesOfDeadCreatorsOnly) {
  const std::string bus_dir = root_ + "/" + bus_;
  std::filesystem::create_directories(bus_dir);
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(wait_exit(dead), 0);
  const pid_t live = ::fork();
  if (live == 0) {
    ::pause();
    ::_exit(0);
  }
  const std::string abandoned = bus_dir + "/t.0.log.creating." + std::to_string(dead);
  const std::string in_progress = bus_dir + "/t.0.cur.creating." + std::to_string(live);
  for (const std::string& p : {abandoned, in_progress}) std::ofstream(p) << "x";
  start();
  EXPECT_FALSE(std::filesystem::exists(abandoned));
  EXPECT_TRUE(std::filesystem::exists(in_progress));
  EXPECT_NE(slurp(dir_ + "/daemon.log").find("removed " + abandoned), std::string::npos)
      << slurp(dir_ + "/daemon.log");
  ::kill(live, SIGKILL);
  wait_exit(live);
}

// A stopped daemon (SIGSTOP) hangs none of its clients: Consumer::open,
// Producer::open and Topic::create give up after the timeout with an error
// that names the socket; continued, the daemon serves them again.
TEST_F(Daemon, StoppedDaemonTimesOutItsClients) {
  start();
  ASSERT_EQ(connect().call(create_request("t"))->message.type, MsgType::Ok);
  ::setenv("SHMBUS_SOCKET", socket_.c_str(), 1);
  ::setenv("SHMBUS_DAEMON_TIMEOUT_MS", "200", 1);
  ASSERT_EQ(::kill(pid_, SIGSTOP), 0);
  const std::string expected = "shmbusd at " + socket_ + " did not answer within 200 ms";
  const auto t0 = Clock::now();
  auto consumer = Consumer::open(bus_, "t");
  const double consumer_ms = ms_since(t0);
  auto producer = Producer::open(bus_, "t");
  shmbus::TopicOptions o;
  o.segment_bytes = 4096;
  o.segment_count = 4;
  auto made = shmbus::Topic::create(bus_, "other", o);
  const double all_ms = ms_since(t0);
  ::kill(pid_, SIGCONT);
  ASSERT_FALSE(consumer);
  EXPECT_EQ(consumer.error().code, ETIMEDOUT);
  EXPECT_NE(consumer.error().message.find(expected), std::string::npos) << consumer.error().message;
  EXPECT_LT(consumer_ms, 1000.0);
  ASSERT_FALSE(producer);
  EXPECT_NE(producer.error().message.find(expected), std::string::npos) << producer.error().message;
  ASSERT_FALSE(made);
  EXPECT_NE(made.error().message.find(expected), std::string::npos) << made.error().message;
  EXPECT_LT(all_ms, 3000.0);
  auto served = Consumer::open(bus_, "t");
  EXPECT_TRUE(served) << served.error().message;
}

}  // namespace
}  // namespace shmbus::control
