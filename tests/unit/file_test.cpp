// lib/shm/file: the temporaries of creators that died before link().
#include "shm/file.hpp"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "log/topic_files.hpp"
#include "shm/process.hpp"
#include "shmbus/topic.hpp"

namespace shmbus::shm {
namespace {

// A process that has exited and been reaped: its pid names nobody (until
// the kernel hands it out again, which takes a whole pid space's worth of forks).
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

// A temporary as create_file leaves it: `header` says whether the creator
// got as far as writing the FileHeader (with `start` as its start time).
void leave_temporary(const std::string& path, bool header, std::uint32_t pid, std::uint64_t start) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  if (header) {
    FileHeader h{};
    h.magic = kMagic;
    h.layout_version = kLayoutVersion;
    h.kind = FileKind::Ring;
    h.file_bytes = 4096;
    h.creator_pid = pid;
    h.creator_start = start;
    ASSERT_EQ(::pwrite(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
  }
  ::close(fd);
}

class CreatingSweep : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/dev/shm/shmbus-file-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    live_ = ::fork();
    if (live_ == 0) {
      ::pause();
      ::_exit(0);
    }
    ASSERT_GT(live_, 0);
  }
  void TearDown() override {
    if (live_ > 0) {
      ::kill(live_, SIGKILL);
      ::waitpid(live_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_);
  }
  bool exists(const std::string& name) const { return std::filesystem::exists(dir_ + "/" + name); }

  std::string dir_;
  pid_t live_ = -1;
};

TEST_F(CreatingSweep, RemovesOnlyTemporariesWhoseCreatorIsDead) {
  const auto dead = static_cast<std::uint32_t>(dead_pid());
  const auto live = static_cast<std::uint32_t>(live_);
  const auto me = self().pid;
  const std::string killed_early = "t.0.log.creating." + std::to_string(dead);  // before the header
  const std::string killed_late = "t.0.cur.creating." + std::to_string(dead);   // after it
  const std::string creating = "t.1.log.creating." + std::to_string(live);      // still running
  const std::string creating_hdr = "t.1.cur.creating." + std::to_string(live);
  const std::string reused = "t.2.log.creating." + std::to_string(live);  // pid reused since
  const std::string mine = "t.3.log.creating." + std::to_string(me);
  leave_temporary(dir_ + "/" + killed_early, false, 0, 0);
  leave_temporary(dir_ + "/" + killed_late, true, dead, 12345);
  leave_temporary(dir_ + "/" + creating, false, 0, 0);
  leave_temporary(dir_ + "/" + creating_hdr, true, live, start_time_of(live_));
  leave_temporary(dir_ + "/" + reused, true, live, start_time_of(live_) + 1);
  leave_temporary(dir_ + "/" + mine, false, 0, 0);
  leave_temporary(dir_ + "/t.4.log", true, dead, 12345);       // a named file: never touched
  leave_temporary(dir_ + "/t.4.log.creating.x", false, 0, 0);  // not a pid

  std::vector<std::string> removed = sweep_abandoned_creations(dir_);
  std::sort(removed.begin(), removed.end());
  std::vector<std::string> expected = {dir_ + "/" + killed_late, dir_ + "/" + killed_early,
                                       dir_ + "/" + reused};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(removed, expected);
  EXPECT_FALSE(exists(killed_early));
  EXPECT_FALSE(exists(killed_late));
  EXPECT_FALSE(exists(reused));
  EXPECT_TRUE(exists(creating)) << "a live creator's temporary stays";
  EXPECT_TRUE(exists(creating_hdr));
  EXPECT_TRUE(exists(mine));
  EXPECT_TRUE(exists("t.4.log"));
  EXPECT_TRUE(exists("t.4.log.creating.x"));
  EXPECT_TRUE(sweep_abandoned_creations(dir_).empty());
}

TEST_F(CreatingSweep, CreateFileSweepsADeadCreatorsTemporary) {
  const auto dead = static_cast<std::uint32_t>(dead_pid());
  const std::string left = "other.0.log.creating." + std::to_string(dead);
  leave_temporary(dir_ + "/" + left, true, dead, 12345);
  auto made = create_file(dir_ + "/t.0.log", FileKind::Ring, 4096, sizeof(FileHeader), 0600,
                          MapOptions{}, [](std::byte*) {});
  ASSERT_TRUE(made) << made.error().message;
  EXPECT_FALSE(exists(left));
  EXPECT_TRUE(exists("t.0.log"));
  EXPECT_FALSE(exists("t.0.log.creating." + std::to_string(self().pid)));
}

// Describing a topic (shmbus describe, stat) maps its cursor file read-only:
// a uid that may only read the files (mode 0644, another owner) describes
// it. Before, the cursor file was opened read-write and this was EACCES.
// Needs root, to become that other uid in a forked child.
TEST(Observer, DescribeNeedsOnlyReadPermission) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop to another uid";
  char tmpl[] = "/dev/shm/shmbus-observer-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  ::setenv("SHMBUS_SHM_ROOT", root.c_str(), 1);
  const std::string dir = bus_directory("obs");
  TopicOptions o;
  o.partitions = 2;
  o.segment_bytes = 4096;
  o.segment_count = 4;
  ASSERT_TRUE(log::create_topic_files(dir, "t", o));
  ::chmod(root.c_str(), 0755);
  ::chmod(dir.c_str(), 0755);
  for (const auto& e : std::filesystem::directory_iterator(dir)) ::chmod(e.path().c_str(), 0644);
  const pid_t child = ::fork();
  if (child == 0) {
    const gid_t none[1] = {65534};
    if (::setgroups(1, none) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0)
      ::_exit(2);
    // A root that uid 65534 cannot traverse (a chroot in a 0700 directory,
    // as a fresh test root is) denies every path: the test cannot run there.
    if (::access(root.c_str(), X_OK) != 0) ::_exit(3);
    auto info = Topic::describe("obs", "t");
    if (!info) std::fprintf(stderr, "describe as uid 65534: %s\n", info.error().message.c_str());
    ::_exit(info && info->partitions.size() == 2 ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ::unsetenv("SHMBUS_SHM_ROOT");
  std::filesystem::remove_all(root);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "uid 65534 cannot reach " << root << " here";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: could not drop to uid 65534";
}

}  // namespace
}  // namespace shmbus::shm
