// lib/log/segment_reader.hpp — reading a durable partition's segment files
// (segment_format.hpp) from a position, batch by batch, while the spiller
// may be appending to them: the path of replay, `shmbus replay` and tests.
//
// A reader trusts what it reads no more than recovery does: every batch's
// header CRC, position (the one expected next), bounds and data CRC are
// checked (check_batch_header / check_batch_frames) before its frames are
// handed out. The newest file's end is a moving frontier: a batch there
// that does not check yet (zeros, or a write seen half done) is "nothing
// more yet", and next() may be called again later; a bad batch before a
// file's complete end is damage (EPROTO, naming the file and offset).
//
// Files are read with pread (never mapped: a file truncated or removed
// under the reader, as retention will, gives an error, never SIGBUS).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "log/segment_format.hpp"
#include "shmbus/status.hpp"

namespace shmbus::log {

class SegmentReader {
 public:
  // What next() hands out: a Frames batch's frames from the position asked
  // for (valid until the next call), or a Gap's lost range.
  struct Batch {
    BatchKind kind = BatchKind::Frames;
    std::uint64_t position = 0;  // of the first frame handed out (or the gap's start)
    std::uint64_t end = 0;       // after the last one (or the gap's end)
    std::span<const std::byte> frames;
  };

  // A reader of dir positioned at its oldest position. ENOENT when there
  // are no segment files (yet).
  static Result<SegmentReader> open(const std::string& dir);
  SegmentReader(SegmentReader&&) noexcept;
  SegmentReader& operator=(SegmentReader&&) noexcept;
  ~SegmentReader();

  // The oldest position on disk (as of the last listing) and the geometry.
  std::uint64_t start() const noexcept { return start_; }
  const SegmentHeader& geometry() const noexcept { return geometry_; }
  // The position next() reads from.
  std::uint64_t position() const noexcept { return position_; }

  // Moves to `position`, a frame boundary on disk. ERANGE when it is below
  // start() (the message names the oldest position), also when retention
  // removed its file since the last listing (start() then says what is
  // oldest now); a position past what is on disk yet is waited for by next().
  Outcome seek(std::uint64_t position);
  // The batch holding position(), from there; nullopt when nothing more is
  // on disk yet. A batch that does not check where the writer says its
  // writes completed (positions below complete_below: the spiller's
  // written watermark) is damage, EPROTO naming the file and offset; past
  // it, a write may be in flight (completions are unordered), so it is
  // the frontier. ERANGE when retention removed the next file before the
  // reader got to it: start() is the oldest position on disk now (a file
  // already open is read to its end, removed or not).
  Result<std::optional<Batch>> next(std::uint64_t complete_below = 0);

  // The position of the first message (a committed data frame) stamped at
  // or after `t`, in position order from start(): what a scan from the
  // oldest message would find first, however the stamps go (two
  // producers' clocks). nullopt when the files hold none (yet). The batch
  // headers are the sparse time index: a batch whose newest stamp is older
  // than t is skipped unread (one pread of its header), so only the batch
  // holding the answer is read whole. Leaves the reader past that batch:
  // seek() to the answer to read from it. Errors as next().
  Result<std::optional<std::uint64_t>> find_time(std::int64_t t, std::uint64_t complete_below = 0);

 private:
  SegmentReader() = default;
  Outcome open_file(std::uint64_t base);
  // Whether the file at `base` is gone because older files were removed
  // (the oldest file on disk is newer); start() moves up to it.
  bool removed(std::uint64_t base);
  Error below_start(std::uint64_t position) const;
  Result<std::optional<BatchHeader>> read_header();
  void close_file() noexcept;

  std::string dir_;
  SegmentHeader geometry_{};
  std::uint64_t start_ = 0;
  int fd_ = -1;
  std::uint64_t base_ = 0;                  // of the open file
  std::uint64_t offset_ = 0;                // of the next batch in it
  std::uint64_t expected_ = 0;              // that batch's position
  std::uint64_t position_ = 0;              // what next() delivers from (>= expected_)
  std::optional<std::int64_t> time_floor_;  // find_time: skip batches stamped before it
  std::vector<std::byte> buf_;
};

}  // namespace shmbus::log
