// The segment file format (log/segment_format.hpp): what the spiller would
// write is accepted whole; a file damaged anywhere (truncated, a bit
// flipped, a page zeroed, garbage after the end) is accepted exactly up to
// the last batch before the first changed byte, never past it, never
// crashing; a batch that does not continue the positions is refused.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "log/segment_format.hpp"
#include "segment_frames.hpp"

namespace shmbus::log {
namespace {

using namespace testing_frames;

std::span<const std::byte> bytes_of(const void* p, std::size_t n) {
  return {static_cast<const std::byte*>(p), n};
}

// A segment file as the spiller would leave it, and where its batches end.
struct File {
  std::vector<std::byte> bytes;
  std::vector<std::uint64_t> batch_ends;  // file offsets
  std::uint64_t end_position = 0;
  std::uint64_t frames = 0;
};
File make_file(std::uint64_t base, std::size_t batches, std::mt19937_64& rng) {
  File file;
  const SegmentHeader h = segment_at(base);
  file.bytes.resize(kSegmentDataAt);
  std::memcpy(file.bytes.data(), &h, sizeof h);
  std::uint64_t p = base;
  for (std::size_t i = 0; i < batches; ++i) {
    BatchHeader b;
    std::vector<std::byte> body;
    if (i % 7 == 6) {
      b = gap_batch(p, p + 3 * kAlignment);
    } else {
      Frames f = make_frames(p, 1 + rng() % 40, rng);
      const std::optional<BatchHeader> made = frames_batch(h, p, f.bytes);
      EXPECT_TRUE(made) << "batch " << i;
      b = *made;
      EXPECT_EQ(b.frames, f.count);
      EXPECT_EQ(b.min_timestamp, f.min_ts);
      EXPECT_EQ(b.max_timestamp, f.max_ts);
      file.frames += f.count;
      body = std::move(f.bytes);
    }
    const auto hb = bytes_of(&b, sizeof b);
    file.bytes.insert(file.bytes.end(), hb.begin(), hb.end());
    file.bytes.insert(file.bytes.end(), body.begin(), body.end());
    file.batch_ends.push_back(file.bytes.size());
    p = b.end;
  }
  file.end_position = p;
  file.bytes.resize(file.bytes.size() + 8192);  // the preallocated zeros
  return file;
}

TEST(SegmentFormat, WhatTheWriterMakesIsAcceptedWhole) {
  std::mt19937_64 rng(7);
  const std::uint64_t base = 5 * kSpan;
  const File f = make_file(base, 30, rng);
  const SegmentScan s = scan_segment(f.bytes, base);
  EXPECT_TRUE(s.header_ok);
  EXPECT_EQ(s.stop, "");
  EXPECT_EQ(s.batches, 30u);
  EXPECT_EQ(s.frames, f.frames);
  EXPECT_EQ(s.gaps, 4u * 3 * kAlignment);
  EXPECT_EQ(s.end, f.end_position);
  EXPECT_EQ(s.valid_bytes, f.batch_ends.back());
}

TEST(SegmentFormat, TheWriterRefusesFramesRecoveryWouldRefuse) {
  std::mt19937_64 rng(8);
  const SegmentHeader h = segment_at(0);
  Frames f = make_frames(0, 10, rng);
  ASSERT_TRUE(frames_batch(h, 0, f.bytes));
  EXPECT_FALSE(frames_batch(h, 64, f.bytes)) << "commit words of other positions";
  EXPECT_FALSE(frames_batch(h, 0, std::span(f.bytes).first(f.bytes.size() - 64)))
      << "the last frame cut";
  std::vector<std::byte> pending = f.bytes;
  const std::uint64_t word = 0 ^ kSalt ^ detail::kPendingBit;
  std::memcpy(pending.data(), &word, 8);
  EXPECT_FALSE(frames_batch(h, 0, pending)) << "a frame still handed out";
  // Frames that are right for their positions, but run past the span.
  const Frames across = make_frames(kSpan - kRingSegment, 200, rng);
  ASSERT_GT(across.bytes.size(), kRingSegment);
  EXPECT_FALSE(frames_batch(h, 0, {})) << "an empty batch";
  EXPECT_FALSE(frames_batch(h, kSpan - kRingSegment, across.bytes))
      << "crossing the segment's span";
}

TEST(SegmentFormat, ABatchThatDoesNotContinueThePositionsEndsTheScan) {
  std::mt19937_64 rng(9);
  File f = make_file(0, 3, rng);
  // A fourth batch, sound in itself (its frames made for its position, its
  // CRCs right), that starts one frame slot after the third one's end.
  f.bytes.resize(f.batch_ends.back());
  const std::uint64_t skipped = f.end_position + kAlignment;
  const Frames next = make_frames(skipped, 5, rng);
  const std::optional<BatchHeader> b = frames_batch(segment_at(0), skipped, next.bytes);
  ASSERT_TRUE(b);
  const auto hb = bytes_of(&*b, sizeof *b);
  f.bytes.insert(f.bytes.end(), hb.begin(), hb.end());
  f.bytes.insert(f.bytes.end(), next.bytes.begin(), next.bytes.end());
  const SegmentScan s = scan_segment(f.bytes, 0);
  EXPECT_EQ(s.batches, 3u);
  EXPECT_EQ(s.valid_bytes, f.batch_ends[2]);
  EXPECT_NE(s.stop.find("expected " + std::to_string(f.end_position)), std::string::npos) << s.stop;
}

// Where a damaged file must stop: the last batch that ends at or before the
// first changed byte (offset d); nothing when d falls in the header itself.
std::uint64_t batches_before(const File& f, std::uint64_t d) {
  std::uint64_t k = 0;
  while (k < f.batch_ends.size() && f.batch_ends[k] <= d) ++k;
  return k;
}

TEST(SegmentFormat, DamageAnywhereIsCutAtTheLastBatchBeforeIt) {
  std::mt19937_64 rng(10);
  const std::uint64_t base = 2 * kSpan;
  const File clean = make_file(base, 25, rng);
  const std::uint64_t data_end = clean.batch_ends.back();
  for (int round = 0; round < 1500; ++round) {
    std::vector<std::byte> file = clean.bytes;
    const int kind = round % 5;
    std::uint64_t d = 0;  // first changed offset (or the truncation point)
    if (kind == 0) {      // truncated at a random offset, often at a boundary
      const std::uint64_t cut = round % 10 == 0
                                    ? clean.batch_ends[rng() % clean.batch_ends.size()] - rng() % 2
                                    : kSegmentDataAt + rng() % (data_end - kSegmentDataAt + 1);
      file.resize(cut);
      d = cut;
    } else if (kind == 1) {  // one bit flipped
      d = rng() % data_end;
      file[d] ^= static_cast<std::byte>(1u << (rng() % 8));
    } else if (kind == 2) {  // a 4 KiB page zeroed
      const std::uint64_t page = (rng() % (data_end / 4096 + 1)) * 4096;
      std::fill(file.begin() + static_cast<std::ptrdiff_t>(page),
                file.begin() +
                    static_cast<std::ptrdiff_t>(std::min<std::uint64_t>(page + 4096, file.size())),
                std::byte{0});
      d = page;
      while (d < file.size() && file[d] == clean.bytes[d]) ++d;
    } else if (kind == 3) {  // a torn page: its second half from another time
      const std::uint64_t page = (rng() % (data_end / 4096 + 1)) * 4096 + 2048;
      for (std::uint64_t i = page; i < std::min<std::uint64_t>(page + 2048, file.size()); ++i)
        file[i] = static_cast<std::byte>(rng());
      d = page;
    } else {  // garbage in the preallocated tail, right after the last batch
      d = data_end + rng() % 128;
      file[d] = static_cast<std::byte>(1 + rng() % 255);
    }
    const SegmentScan s = scan_segment(file, base);
    if (d < sizeof(SegmentHeader) || (kind == 0 && d < kSegmentDataAt)) {
      EXPECT_FALSE(s.header_ok) << "round " << round;
      EXPECT_EQ(s.batches, 0u);
      continue;
    }
    ASSERT_TRUE(s.header_ok) << "round " << round << " d " << d;
    // The rest of the header block is not read: damage there cuts nothing.
    const std::uint64_t k = d < kSegmentDataAt ? clean.batch_ends.size() : batches_before(clean, d);
    ASSERT_EQ(s.batches, k) << "round " << round << " kind " << kind << " d " << d;
    ASSERT_EQ(s.valid_bytes, k == 0 ? kSegmentDataAt : clean.batch_ends[k - 1]);
    // Damage is said, not only cut: anything but a cut at a batch end.
    const bool clean_cut = kind == 0 && (d == kSegmentDataAt ||
                                         std::find(clean.batch_ends.begin(), clean.batch_ends.end(),
                                                   d) != clean.batch_ends.end());
    if (!clean_cut && (kind == 0 || kind == 4 || k < clean.batch_ends.size())) {
      EXPECT_NE(s.stop, "") << "round " << round << " kind " << kind << " d " << d;
    }
  }
}

TEST(SegmentFormat, AHeaderForAnotherBaseOrGeometryIsRefused) {
  std::mt19937_64 rng(11);
  const File f = make_file(kSpan, 3, rng);
  EXPECT_FALSE(scan_segment(f.bytes, 2 * kSpan).header_ok);
  SegmentHeader h = segment_at(0);
  h.ring_segment = 3000;
  seal(h);
  EXPECT_FALSE(check(h));
  h = segment_at(kSpan / 2);
  EXPECT_FALSE(check(h)) << "a base that is not a multiple of the span";
  EXPECT_FALSE(scan_segment(std::span(f.bytes).first(100), kSpan).header_ok);
}

}  // namespace
}  // namespace shmbus::log
