// Reading segment files back (log/segment_reader.hpp): every frame the
// log appended, from the oldest position and from any frame boundary,
// across files and gaps; the frontier (a batch not written yet, or seen
// half written) is "nothing more yet", and more appended later is read on.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "log/segment_log.hpp"
#include "log/segment_reader.hpp"
#include "segment_frames.hpp"

namespace shmbus::log {
namespace {

using namespace testing_frames;
namespace fs = std::filesystem;

constexpr std::uint64_t kSmallSpan = 16 * 1024;

class SegmentReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/shmbus-segment-reader-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
  }
  void TearDown() override { fs::remove_all(dir); }

  // Appends frames and gaps; records every frame position and each lost range.
  void append(SegmentLog& log, int chunks, std::mt19937_64& rng) {
    for (int i = 0; i < chunks; ++i) {
      if (i % 7 == 6) {
        const std::uint64_t from = log.end();
        ASSERT_TRUE(log.append_gap(from + 3 * kAlignment));
        lost.push_back({from, log.end()});
        continue;
      }
      const Frames f = make_frames(log.end(), 1 + rng() % 20, rng);
      std::uint64_t p = log.end();
      for (std::size_t at = 0; at < f.bytes.size();) {
        frames.push_back(p);
        std::uint32_t len = 0;
        std::memcpy(&len, &f.bytes[at + detail::kFrameLengthAt], 4);
        const std::uint64_t n = detail::frame_bytes(len, kAlignment);
        at += n;
        p += n;
      }
      ASSERT_TRUE(log.append(log.end(), f.bytes));
    }
  }

  // Reads everything from the reader's position: frame positions and gaps.
  void read_all(SegmentReader& r, std::vector<std::uint64_t>& got,
                std::vector<std::pair<std::uint64_t, std::uint64_t>>& gaps) {
    for (;;) {
      auto b = r.next();
      ASSERT_TRUE(b) << b.error().message;
      if (!*b) return;
      if ((*b)->kind == BatchKind::Gap) {
        gaps.push_back({(*b)->position, (*b)->end});
        continue;
      }
      std::uint64_t p = (*b)->position;
      const auto& f = (*b)->frames;
      while (p < (*b)->end) {
        got.push_back(p);
        auto* at = const_cast<std::byte*>(f.data() + (p - (*b)->position));
        const detail::FrameLook l = detail::look_at_frame<std::memory_order_relaxed>(
            at, p, kSalt, kRingSegment, kAlignment);
        ASSERT_NE(l.next, 0u);
        p = l.next;
      }
    }
  }

  std::string dir;
  std::vector<std::uint64_t> frames;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> lost;
};

TEST_F(SegmentReaderTest, ReadsEveryFrameFromAnyBoundaryAcrossFilesAndGaps) {
  std::mt19937_64 rng(7);
  auto log = SegmentLog::open(dir, segment_at(0, kSmallSpan), 0);
  ASSERT_TRUE(log) << log.error().message;
  append(*log, 60, rng);
  ASSERT_GT(log->end(), 3 * kSmallSpan) << "the test must cross files";
  auto r = SegmentReader::open(dir);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->start(), 0u);
  std::vector<std::uint64_t> got;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;
  read_all(*r, got, gaps);
  EXPECT_EQ(got, frames);
  EXPECT_EQ(gaps, lost);
  // From every 13th frame boundary: exactly the frames from there on.
  for (std::size_t i = 0; i < frames.size(); i += 13) {
    ASSERT_TRUE(r->seek(frames[i]));
    got.clear();
    gaps.clear();
    read_all(*r, got, gaps);
    EXPECT_EQ(got, std::vector<std::uint64_t>(frames.begin() + static_cast<std::ptrdiff_t>(i),
                                              frames.end()))
        << "from " << frames[i];
  }
  // Not a frame boundary: refused, not misread.
  ASSERT_TRUE(r->seek(frames[1] + kAlignment == frames[2] ? frames[3] + 32 : frames[1] + 32));
  auto bad = r->next();
  ASSERT_FALSE(bad) << "a position inside a frame must be refused";
  EXPECT_EQ(bad.error().code, EINVAL);
}

// A flipped byte in a batch the writer completed is damage, named; past
// what the writer says it completed, the same bytes are the frontier (a
// write in flight).
TEST_F(SegmentReaderTest, DamageBelowWhatTheWriterCompletedIsAnErrorNamingIt) {
  std::mt19937_64 rng(3);
  auto log = SegmentLog::open(dir, segment_at(0, kSmallSpan), 0);
  ASSERT_TRUE(log);
  append(*log, 4, rng);
  const std::string file = dir + "/" + segment_name(0);
  {
    std::FILE* f = std::fopen(file.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, static_cast<long>(kSegmentDataAt + sizeof(BatchHeader) + 40), SEEK_SET);
    const int c = std::fgetc(f);
    std::fseek(f, -1, SEEK_CUR);
    std::fputc(c ^ 0x10, f);
    std::fclose(f);
  }
  auto r = SegmentReader::open(dir);
  ASSERT_TRUE(r);
  auto frontier = r->next(0);
  ASSERT_TRUE(frontier) << frontier.error().message;
  EXPECT_FALSE(*frontier);
  auto damaged = r->next(log->end());
  ASSERT_FALSE(damaged);
  EXPECT_EQ(damaged.error().code, EPROTO);
  EXPECT_NE(damaged.error().message.find(segment_name(0)), std::string::npos)
      << damaged.error().message;
}

TEST_F(SegmentReaderTest, TheFrontierIsNothingYetThenMoreIsReadOn) {
  std::mt19937_64 rng(11);
  auto log = SegmentLog::open(dir, segment_at(0, kSmallSpan), 0);
  ASSERT_TRUE(log);
  append(*log, 5, rng);
  auto r = SegmentReader::open(dir);
  ASSERT_TRUE(r);
  std::vector<std::uint64_t> got;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;
  read_all(*r, got, gaps);
  EXPECT_EQ(got, frames);
  // A batch header written without its frames (a write seen half done).
  const std::uint64_t end = log->end();
  const Frames f = make_frames(end, 3, rng);
  SegmentHeader h = segment_at(end - end % kSmallSpan, kSmallSpan);
  const auto b = frames_batch(h, end, f.bytes);
  ASSERT_TRUE(b);
  {
    const std::string last = dir + "/" + segment_name(end - end % kSmallSpan);
    std::FILE* file = std::fopen(last.c_str(), "ab");
    ASSERT_NE(file, nullptr);
    ASSERT_EQ(std::fwrite(&*b, sizeof *b, 1, file), 1u);
    std::fclose(file);
  }
  auto next = r->next();
  ASSERT_TRUE(next);
  EXPECT_FALSE(*next);
  append(*log, 40, rng);  // crosses into new files
  read_all(*r, got, gaps);
  EXPECT_EQ(got, frames);
  EXPECT_EQ(r->position(), log->end());
}

TEST_F(SegmentReaderTest, BelowTheOldestIsOutOfRangeNamingIt) {
  std::mt19937_64 rng(5);
  auto log = SegmentLog::open(dir, segment_at(0, kSmallSpan), 5 * kSmallSpan + 4096);
  ASSERT_TRUE(log);
  append(*log, 3, rng);
  auto r = SegmentReader::open(dir);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->start(), 5 * kSmallSpan + 4096);
  const Outcome below = r->seek(4096);
  ASSERT_FALSE(below);
  EXPECT_EQ(below.error().code, ERANGE);
  EXPECT_NE(below.error().message.find(std::to_string(5 * kSmallSpan + 4096)), std::string::npos);
  std::vector<std::uint64_t> got;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;
  read_all(*r, got, gaps);
  EXPECT_EQ(got, frames);
}

// Retention (SegmentLog::remove_old): whole files, oldest first, by size
// and by age, never the file being appended to nor the last checkpoint's.
// A reader with a removed file open reads it to its end; one that reaches
// a removed file gets ERANGE and the new oldest position.
TEST_F(SegmentReaderTest, RetentionRemovesOldFilesAndReadersSeeOutOfRange) {
  std::mt19937_64 rng(11);
  auto log = SegmentLog::open(dir, segment_at(0, kSmallSpan), 0);
  ASSERT_TRUE(log) << log.error().message;
  while (log->end() < 6 * kSmallSpan) ASSERT_NO_FATAL_FAILURE(append(*log, 1, rng));
  auto files = [&] {
    auto b = list_segments(dir);
    return b ? b->size() : 0u;
  };
  const std::size_t made = files();
  ASSERT_GE(made, 7u);
  // Two readers in the oldest file.
  auto open_reader = SegmentReader::open(dir);
  ASSERT_TRUE(open_reader);
  auto first = open_reader->next();
  ASSERT_TRUE(first && *first);
  auto late_reader = SegmentReader::open(dir);
  ASSERT_TRUE(late_reader);

  // No limit: nothing goes.
  auto none = log->remove_old(0, 0);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->files, 0u);
  // By size: the oldest go until the files hold at most 3 spans (each file
  // holds a header block and a span of frames).
  ASSERT_TRUE(log->checkpoint());  // in the current file: nothing pins older ones
  auto by_size = log->remove_old(3 * kSmallSpan, 0);
  ASSERT_TRUE(by_size) << by_size.error().message;
  EXPECT_GE(by_size->files, made - 3);
  EXPECT_LE(files(), 3u);
  const std::uint64_t start = log->start();
  EXPECT_EQ(start % kSmallSpan, 0u);
  EXPECT_GT(start, 0u);
  // By age: everything not written since (mtime now) but the current file.
  auto listed = list_segments(dir);
  ASSERT_TRUE(listed);
  const std::vector<std::uint64_t> bases = *listed;
  for (std::size_t i = 0; i + 1 < bases.size(); ++i) {
    const timespec old[2] = {{1, 0}, {1, 0}};  // 1970
    ASSERT_EQ(::utimensat(AT_FDCWD, (dir + "/" + segment_name(bases[i])).c_str(), old, 0), 0);
  }
  auto by_age = log->remove_old(0, 1'000'000'000LL * 3600);  // older than 1970 + 1 h
  ASSERT_TRUE(by_age);
  EXPECT_EQ(by_age->files, bases.size() - 1);
  EXPECT_EQ(files(), 1u) << "the file being appended to stays";
  EXPECT_EQ(log->start(), bases.back());

  // The open reader reads its removed file to its end, then is told.
  std::uint64_t read_to = (*first)->end;
  for (;;) {
    auto b = open_reader->next();
    if (!b) {
      EXPECT_EQ(b.error().code, ERANGE) << b.error().message;
      EXPECT_EQ(open_reader->start(), bases.back());
      EXPECT_NE(b.error().message.find(std::to_string(bases.back())), std::string::npos);
      break;
    }
    ASSERT_TRUE(*b) << "the frontier before the files' end";
    EXPECT_EQ((*b)->position, read_to);
    read_to = (*b)->end;
  }
  EXPECT_EQ(read_to, kSmallSpan) << "the whole first file";
  // The other seeks into a removed file it never opened: ERANGE naming
  // the oldest position now.
  const Outcome below = late_reader->seek(kSmallSpan);
  ASSERT_FALSE(below);
  EXPECT_EQ(below.error().code, ERANGE);
  EXPECT_NE(below.error().message.find(std::to_string(bases.back())), std::string::npos);
  ASSERT_TRUE(late_reader->seek(bases.back()));
  auto again = late_reader->next();
  ASSERT_TRUE(again && *again) << "reads on from the oldest file";

  // Recovery of what is left: the files from the new start.
  ASSERT_TRUE(log->close());
  auto reopened = SegmentLog::open(dir, segment_at(0, kSmallSpan), 0);
  ASSERT_TRUE(reopened) << reopened.error().message;
  EXPECT_EQ(reopened->start(), bases.back());
  EXPECT_EQ(reopened->recovery().damage, "");
}

// find_time against a brute-force scan: the first data frame in position
// order stamped at or after t, with bursts of equal stamps, long gaps,
// stamps that go backwards (two producers' clocks), unstamped and skipped
// frames, and Gap batches, across files.
TEST_F(SegmentReaderTest, FindTimeAgreesWithABruteForceScan) {
  std::mt19937_64 rng(13);
  auto log = SegmentLog::open(dir, segment_at(0, kSmallSpan), 0);
  ASSERT_TRUE(log);
  struct Seen {
    std::uint64_t position;
    std::int64_t ts;  // data frames only
  };
  std::vector<Seen> data;
  std::int64_t clock = 1'700'000'000'000'000'000;
  for (int chunk = 0; chunk < 120; ++chunk) {
    if (chunk % 17 == 16) {
      ASSERT_TRUE(log->append_gap(log->end() + 2 * kAlignment));
      continue;
    }
    std::vector<std::byte> bytes;
    std::uint64_t p = log->end();
    const std::size_t n = 1 + rng() % 12;
    for (std::size_t i = 0; i < n; ++i) {
      const auto body = static_cast<std::uint32_t>(rng() % 200);
      const std::uint64_t len = detail::frame_bytes(body, kAlignment);
      const std::uint64_t left = detail::segment_left(p, kRingSegment);
      if (len > left) {
        put_frame(bytes, p, 2, static_cast<std::uint32_t>(left - detail::kFrameHeaderBytes), 0,
                  false, rng);
        p += left;
      }
      switch (rng() % 8) {
        case 0:
          clock += 1'000'000'000;
          break;  // a long gap
        case 1:
          clock -= static_cast<std::int64_t>(rng() % 5'000'000);
          break;  // backwards
        case 2:
          break;  // a burst
        default:
          clock += static_cast<std::int64_t>(rng() % 100'000);
      }
      const bool unstamped = rng() % 11 == 0, skipped = rng() % 13 == 0;
      const std::int64_t ts = unstamped ? 0 : clock;
      put_frame(bytes, p, 1, body, ts, skipped, rng);
      if (!skipped) data.push_back({p, ts});
      p += len;
    }
    ASSERT_TRUE(log->append(log->end(), bytes));
  }
  ASSERT_GT(log->end(), 3 * kSmallSpan) << "the test must cross files";
  auto brute = [&](std::int64_t t) -> std::optional<std::uint64_t> {
    for (const Seen& d : data)
      if (d.ts != 0 && d.ts >= t) return d.position;
    return std::nullopt;
  };
  auto r = SegmentReader::open(dir);
  ASSERT_TRUE(r);
  std::vector<std::int64_t> queries = {0, 1, clock + 1, std::numeric_limits<std::int64_t>::max()};
  for (const Seen& d : data) {
    if (d.ts == 0) continue;
    queries.push_back(d.ts);
    queries.push_back(d.ts - 1);
    queries.push_back(d.ts + 1);
  }
  for (std::int64_t t : queries) {
    auto found = r->find_time(t);
    ASSERT_TRUE(found) << found.error().message;
    ASSERT_EQ(*found, brute(t)) << "t = " << t;
    if (*found) {  // and it reads from there
      ASSERT_TRUE(r->seek(**found));
      auto b = r->next();
      ASSERT_TRUE(b && *b);
      EXPECT_EQ((*b)->position, **found);
    }
  }
}

// The last checkpoint's file is never removed, so recovery can use it.
TEST_F(SegmentReaderTest, RetentionKeepsTheLastCheckpointsFile) {
  std::mt19937_64 rng(12);
  auto log = SegmentLog::open(dir, segment_at(0, kSmallSpan), 0);
  ASSERT_TRUE(log);
  ASSERT_NO_FATAL_FAILURE(append(*log, 1, rng));
  ASSERT_TRUE(log->checkpoint());  // in the first file
  while (log->end() < 4 * kSmallSpan) ASSERT_NO_FATAL_FAILURE(append(*log, 1, rng));
  SegmentLog moved = std::move(*log);  // as the spiller holds it: the checkpoint's file goes along
  auto removed = moved.remove_old(1, 0);
  ASSERT_TRUE(removed);
  EXPECT_EQ(removed->files, 0u);
  EXPECT_EQ(moved.start(), 0u);
}

}  // namespace
}  // namespace shmbus::log
