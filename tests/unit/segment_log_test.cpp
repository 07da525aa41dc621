// A durable partition's directory (log/segment_log.hpp): appends across
// segment files, recovery at open after clean closes, after damage in the
// last or a middle file (the first damage and everything after it cut, the
// rest kept, appends continuing where it ends), and a full file system
// (a size-limited tmpfs the test mounts): a clear error, nothing committed
// lost.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "log/segment_log.hpp"
#include "segment_frames.hpp"

namespace shmbus::log {
namespace {

using namespace testing_frames;
namespace fs = std::filesystem;

constexpr std::uint64_t kSmallSpan = 16 * 1024;  // four ring segments: files roll often

class SegmentLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/shmbus-segment-log-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
  }
  void TearDown() override {
    if (!mounted.empty()) ::umount2(mounted.c_str(), MNT_DETACH);
    fs::remove_all(dir);
  }

  SegmentHeader geometry() const { return segment_at(0, kSmallSpan); }

  // Appends `n` chunks of frames (and a gap every 5th), returning the
  // number of frames written.
  std::uint64_t append_chunks(SegmentLog& log, int n, std::mt19937_64& rng) {
    std::uint64_t frames = 0;
    for (int i = 0; i < n; ++i) {
      if (i % 5 == 4) {
        EXPECT_TRUE(log.append_gap(log.end() + 2 * kAlignment));
        continue;
      }
      const Frames f = make_frames(log.end(), 1 + rng() % 30, rng);
      const Outcome r = log.append(log.end(), f.bytes);
      EXPECT_TRUE(r) << (r ? "" : r.error().message);
      frames += f.count;
    }
    return frames;
  }

  std::vector<fs::path> files() const {
    std::vector<fs::path> v;
    for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path());  // .seg and checkpoint
    std::sort(v.begin(), v.end());
    return v;
  }

  std::string dir;
  std::string mounted;  // a test's own small file system, unmounted after it
};

TEST_F(SegmentLogTest, AppendsAcrossFilesAndRecoversThemWhole) {
  std::mt19937_64 rng(1);
  std::uint64_t frames = 0, end = 0;
  {
    auto log = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    EXPECT_EQ(log->recovery().segments, 0u);
    frames = append_chunks(*log, 60, rng);
    ASSERT_TRUE(log->sync());
    end = log->end();
  }
  ASSERT_GT(files().size(), 3u) << "the test should cross several files";
  auto log = SegmentLog::open(dir, geometry(), 0);
  ASSERT_TRUE(log) << log.error().message;
  const Recovery& r = log->recovery();
  EXPECT_EQ(r.damage, "");
  EXPECT_EQ(r.end, end);
  EXPECT_EQ(log->end(), end);
  EXPECT_EQ(r.frames, frames);
  EXPECT_EQ(r.segments, files().size());
  EXPECT_EQ(r.removed_segments, 0u);
  // And it goes on where it was.
  const std::uint64_t more = append_chunks(*log, 10, rng);
  const std::uint64_t end2 = log->end();
  auto again = SegmentLog::open(dir, geometry(), 0);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->recovery().frames, frames + more);
  EXPECT_EQ(again->end(), end2);
}

TEST_F(SegmentLogTest, AFirstFileThatStartsInsideItsSpanSaysWhatItDoesNotHold) {
  std::mt19937_64 rng(2);
  const std::uint64_t start = kSmallSpan + 5 * kAlignment;
  {
    auto log = SegmentLog::open(dir, geometry(), start);
    ASSERT_TRUE(log) << log.error().message;
    const Frames f = make_frames(start, 3, rng);
    ASSERT_TRUE(log->append(start, f.bytes));
  }
  auto log = SegmentLog::open(dir, geometry(), 0);
  ASSERT_TRUE(log) << log.error().message;
  EXPECT_EQ(log->start(), kSmallSpan);
  EXPECT_EQ(log->recovery().batches, 2u) << "a gap [span, start), then the frames";
  EXPECT_FALSE(log->append(log->end() + kAlignment, {})) << "appends must continue the end";
}

TEST_F(SegmentLogTest, DamageIsCutWithEverythingAfterItAndAppendsContinue) {
  std::mt19937_64 rng(3);
  for (int round = 0; round < 120; ++round) {
    fs::remove_all(dir);
    std::vector<std::uint64_t> ends;  // after each append, and the files then
    {
      auto log = SegmentLog::open(dir, geometry(), 0);
      ASSERT_TRUE(log) << log.error().message;
      for (int i = 0; i < 25; ++i) {
        const Frames f = make_frames(log->end(), 1 + rng() % 20, rng);
        ASSERT_TRUE(log->append(log->end(), f.bytes));
        ends.push_back(log->end());
      }
    }
    const std::vector<fs::path> before = files();
    // Damage one file: a truncation or a flipped byte past its header.
    const fs::path victim = before[rng() % before.size()];
    const auto size = fs::file_size(victim);
    const std::uint64_t at = kSegmentDataAt + rng() % (size - kSegmentDataAt);
    if (round % 2 == 0) {
      fs::resize_file(victim, at);
    } else {
      std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(static_cast<std::streamoff>(at));
      char c;
      f.read(&c, 1);
      c = static_cast<char>(c ^ 0x20);
      f.seekp(static_cast<std::streamoff>(at));
      f.write(&c, 1);
    }
    auto log = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    const Recovery& r = log->recovery();
    // The victim's base and its recovered end bound what is kept.
    const std::uint64_t victim_base = std::stoull(victim.filename().string().substr(0, 20));
    EXPECT_GE(r.end, victim_base) << "round " << round;
    EXPECT_LE(r.end, victim_base + kSmallSpan);
    EXPECT_TRUE(std::find(ends.begin(), ends.end(), r.end) != ends.end() || r.end == victim_base)
        << "round " << round << ": recovery ended at " << r.end << ", not at a batch end";
    for (const fs::path& p : files())
      EXPECT_LE(p, victim) << "round " << round << ": a file after the damage survived";
    if (round % 2 == 1) {
      EXPECT_NE(r.damage, "") << "round " << round << ": a flipped byte went unseen";
    }
    // Appending goes on from there, and a reopen agrees.
    const Frames f = make_frames(log->end(), 5, rng);
    const std::uint64_t from = log->end();
    ASSERT_TRUE(log->append(from, f.bytes)) << "round " << round;
    const std::uint64_t end = log->end();
    auto again = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(again) << again.error().message;
    EXPECT_EQ(again->recovery().damage, "") << "round " << round;
    EXPECT_EQ(again->end(), end);
  }
}

std::uint64_t total_size(const std::vector<fs::path>& files) {
  std::uint64_t n = 0;
  for (const fs::path& p : files)
    if (p.extension() == ".seg") n += fs::file_size(p) - kSegmentDataAt;
  return n;
}

TEST_F(SegmentLogTest, AfterACheckpointRecoveryReadsOnlyWhatCameAfterIt) {
  std::mt19937_64 rng(5);
  std::uint64_t end = 0, after = 0;
  {
    auto log = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    append_chunks(*log, 60, rng);
    ASSERT_TRUE(log->checkpoint());
    const std::uint64_t before = total_size(files());
    append_chunks(*log, 3, rng);
    after = total_size(files()) - before;
    end = log->end();
  }  // gone without a close, as after kill -9
  {
    auto log = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    const Recovery& r = log->recovery();
    EXPECT_TRUE(r.from_checkpoint) << r.checkpoint_note;
    EXPECT_FALSE(r.clean);
    EXPECT_EQ(r.end, end);
    EXPECT_EQ(r.scanned_bytes, after) << "exactly what was appended after the checkpoint";
    EXPECT_TRUE(log->close());
  }
  auto log = SegmentLog::open(dir, geometry(), 0);
  ASSERT_TRUE(log) << log.error().message;
  EXPECT_TRUE(log->recovery().clean);
  EXPECT_EQ(log->recovery().scanned_bytes, 0u);
  EXPECT_EQ(log->end(), end);
}

TEST_F(SegmentLogTest, ACheckpointThatDoesNotMatchTheFilesIsNotTrusted) {
  std::mt19937_64 rng(6);
  std::uint64_t end = 0;
  {
    auto log = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    append_chunks(*log, 40, rng);
    end = log->end();
    ASSERT_TRUE(log->close());
  }
  const std::uint64_t all = total_size(files());
  {  // a flipped byte: not a valid checkpoint
    std::fstream f(dir + "/checkpoint", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x7f');
  }
  {
    auto log = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    EXPECT_FALSE(log->recovery().from_checkpoint);
    EXPECT_NE(log->recovery().checkpoint_note.find("not a valid checkpoint"), std::string::npos)
        << log->recovery().checkpoint_note;
    EXPECT_EQ(log->recovery().scanned_bytes, all);
    EXPECT_EQ(log->end(), end);
    ASSERT_TRUE(log->close());
  }
  // Its file cut below where it points: everything is scanned, the cut found.
  std::vector<fs::path> segs = files();
  std::erase_if(segs, [](const fs::path& p) { return p.extension() != ".seg"; });
  fs::resize_file(segs.back(), fs::file_size(segs.back()) - 10);
  auto log = SegmentLog::open(dir, geometry(), 0);
  ASSERT_TRUE(log) << log.error().message;
  EXPECT_FALSE(log->recovery().from_checkpoint);
  EXPECT_NE(log->recovery().checkpoint_note.find("shorter"), std::string::npos)
      << log->recovery().checkpoint_note;
  EXPECT_NE(log->recovery().damage, "");
  EXPECT_LT(log->end(), end);
}

// A failed write of a first file's leading gap leaves no file behind that
// a later append could write frames into without the gap (found by a
// review: the next full scan cut the file to its header).
TEST_F(SegmentLogTest, AFailedLeadingGapLeavesNoHalfMadeFile) {
  std::mt19937_64 rng(7);
  const std::uint64_t start = kSmallSpan + 5 * kAlignment;
  auto log = SegmentLog::open(dir, geometry(), start);
  ASSERT_TRUE(log) << log.error().message;
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = kSegmentDataAt + 32;  // the header block fits, the gap batch does not
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const Frames f = make_frames(start, 3, rng);
  const Outcome failed = log->append(start, f.bytes);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old), 0);
  std::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, EFBIG) << failed.error().message;
  EXPECT_EQ(log->end(), start);
  ASSERT_TRUE(log->append(start, f.bytes));
  const std::uint64_t end = log->end();
  auto again = SegmentLog::open(dir, geometry(), 0);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->recovery().damage, "");
  EXPECT_EQ(again->end(), end);
  EXPECT_EQ(again->recovery().batches, 2u) << "the gap, then the frames";
}

// A checkpoint that recovery could not use is removed, so that it cannot
// vouch later for files it never saw (found by a review).
TEST_F(SegmentLogTest, ACheckpointNotUsedIsRemovedBeforeAnythingIsAppended) {
  std::mt19937_64 rng(8);
  {
    auto log = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    append_chunks(*log, 30, rng);
    ASSERT_TRUE(log->checkpoint());
  }
  std::vector<fs::path> segs = files();
  std::erase_if(segs, [](const fs::path& p) { return p.extension() != ".seg"; });
  fs::resize_file(segs.back(), fs::file_size(segs.back()) / 2 + kSegmentDataAt / 2);
  std::uint64_t end = 0;
  {
    auto log = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    EXPECT_FALSE(log->recovery().from_checkpoint);
    EXPECT_FALSE(fs::exists(dir + "/checkpoint"));
    // Refill past where the old checkpoint pointed, and stop without a close.
    append_chunks(*log, 30, rng);
    end = log->end();
  }
  auto log = SegmentLog::open(dir, geometry(), 0);
  ASSERT_TRUE(log) << log.error().message;
  EXPECT_EQ(log->recovery().damage, "");
  EXPECT_EQ(log->end(), end);
}

// A damaged header in front of data, a file missing in the middle, or
// another version's file: open fails naming it, and nothing is deleted.
TEST_F(SegmentLogTest, WhatRecoveryCannotJudgeItRefusesAndDeletesNothing) {
  std::mt19937_64 rng(9);
  {
    auto log = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    append_chunks(*log, 40, rng);
  }
  const std::vector<fs::path> before = files();
  ASSERT_GE(before.size(), 3u);
  auto flip = [](const fs::path& p, std::streamoff at) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(at);
    char c;
    f.read(&c, 1);
    f.seekp(at);
    f.put(static_cast<char>(c ^ 1));
  };
  flip(before.front(), 20);  // in the oldest file's header
  auto damaged = SegmentLog::open(dir, geometry(), 0);
  ASSERT_FALSE(damaged);
  EXPECT_NE(damaged.error().message.find(before.front().filename().string()), std::string::npos)
      << damaged.error().message;
  EXPECT_EQ(files(), before);
  flip(before.front(), 20);

  {
    std::fstream f(before.front(), std::ios::in | std::ios::out | std::ios::binary);
    SegmentHeader h;
    f.read(reinterpret_cast<char*>(&h), sizeof h);
    h.version = kSegmentVersion + 1;
    f.seekp(0);
    f.write(reinterpret_cast<const char*>(&h), sizeof h);
  }
  auto other = SegmentLog::open(dir, geometry(), 0);
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("format version"), std::string::npos)
      << other.error().message;
  EXPECT_EQ(files(), before);
  {
    std::fstream f(before.front(), std::ios::in | std::ios::out | std::ios::binary);
    SegmentHeader h;
    f.read(reinterpret_cast<char*>(&h), sizeof h);
    h.version = kSegmentVersion;
    f.seekp(0);
    f.write(reinterpret_cast<const char*>(&h), sizeof h);
  }
  ASSERT_TRUE(SegmentLog::open(dir, geometry(), 0)) << "restored";

  const fs::path middle = before[1];
  const fs::path kept = dir + "/aside";
  fs::rename(middle, kept);
  auto gap = SegmentLog::open(dir, geometry(), 0);
  ASSERT_FALSE(gap);
  EXPECT_NE(gap.error().message.find("does not start where"), std::string::npos)
      << gap.error().message;
  fs::rename(kept, middle);
  EXPECT_EQ(files(), before);
}

TEST_F(SegmentLogTest, ALastFileCutShortAtItsCreationGoes) {
  std::mt19937_64 rng(10);
  std::uint64_t end = 0;
  {
    auto log = SegmentLog::open(dir, geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    while (log->end() < kSmallSpan) {  // exactly one full file
      const std::uint64_t room = kSmallSpan - log->end();
      const Frames f = make_frames(log->end(), 1, rng);
      if (f.bytes.size() > room) break;
      ASSERT_TRUE(log->append(log->end(), f.bytes));
    }
    end = log->end();
  }
  // The next file, its header block torn.
  std::vector<std::byte> torn(kSegmentDataAt, std::byte{0x33});
  std::ofstream(dir + "/" + segment_name(kSmallSpan), std::ios::binary)
      .write(reinterpret_cast<const char*>(torn.data()), static_cast<std::streamsize>(torn.size()));
  auto log = SegmentLog::open(dir, geometry(), 0);
  ASSERT_TRUE(log) << log.error().message;
  EXPECT_NE(log->recovery().damage.find("cut short"), std::string::npos) << log->recovery().damage;
  EXPECT_EQ(log->recovery().removed_segments, 1u);
  EXPECT_EQ(log->end(), end);
}

TEST_F(SegmentLogTest, AFullFileSystemIsAClearErrorAndLosesNothingWritten) {
  const std::string mnt = dir + "/small";
  fs::create_directories(mnt);
  if (::mount("shmbus-test", mnt.c_str(), "tmpfs", 0, "size=96k,mode=0750") != 0)
    GTEST_SKIP() << "cannot mount a small tmpfs here: " << std::strerror(errno);
  mounted = mnt;
  std::mt19937_64 rng(4);
  std::uint64_t last_ok = 0;
  std::string error;
  {
    auto log = SegmentLog::open(mnt + "/p0", geometry(), 0);
    ASSERT_TRUE(log) << log.error().message;
    for (int i = 0; i < 10000 && error.empty(); ++i) {
      const Frames f = make_frames(log->end(), 10, rng);
      const Outcome r = log->append(log->end(), f.bytes);
      if (!r) error = r.error().message;
      last_ok = log->end();  // on an error: how far it got (a new file may have failed)
    }
  }
  EXPECT_NE(error.find("No space left"), std::string::npos) << error;
  EXPECT_NE(error.find("segment"), std::string::npos) << error;
  auto log = SegmentLog::open(mnt + "/p0", geometry(), 0);
  ASSERT_TRUE(log) << log.error().message;
  EXPECT_EQ(log->end(), last_ok) << "everything appended before the error is there";
}

}  // namespace
}  // namespace shmbus::log
