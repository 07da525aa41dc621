// lib/log/segment_log.hpp — one durable partition's directory of segment
// files (segment_format.hpp): recovery when it is opened, then appends.
//
//   <dir>/00000000000000000000.seg   positions [0, span)
//   <dir>/00000000001073741824.seg   positions [span, 2 span)   ...
//
// Recovery, automatic at open (STYLE.md 18): the files are taken in base
// order, each scanned (scan_segment); each must start where the one before
// it ended, and only a full one may have a successor. The first file that
// fails is truncated after its last good batch, and every file after it is
// removed: nothing after the first damage is trusted, nothing is repaired.
// The directory is fsynced after a file is created or removed. A
// checkpoint (segment_format.hpp) lets recovery skip what it vouches for:
// after a crash, only what was appended since the last one is read.
//
// Appends are plain pwrite()s and fdatasync(): this is the format's
// reference writer, the path a spiller without io_uring takes, and what the
// tests check files against. Not thread-safe: one writer per partition, and
// no two processes (the daemon's spiller owns the directory).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "log/segment_format.hpp"
#include "shmbus/status.hpp"

namespace shmbus::log {

// What recovery found and did.
struct Recovery {
  std::uint64_t start = 0;     // oldest position on disk
  std::uint64_t end = 0;       // next position to append
  std::uint64_t segments = 0;  // files kept
  std::uint64_t batches = 0;   // accepted, in all of them
  std::uint64_t frames = 0;
  std::uint64_t truncated_bytes = 0;   // cut from the first damaged file
  std::uint64_t removed_segments = 0;  // files after it
  std::string damage;                  // what the first damaged file said ("" when none)
  bool from_checkpoint = false;        // the files before the checkpoint's were not read
  bool clean = false;                  // a clean close's checkpoint, nothing after it
  std::string checkpoint_note;         // why a checkpoint there was not used ("" when none)
  std::uint64_t scanned_bytes = 0;     // batch bytes read and checked
};

// The file name of the segment starting at `base`.
std::string segment_name(std::uint64_t base);
// The bases of the segment files in dir, ascending.
Result<std::vector<std::uint64_t>> list_segments(const std::string& dir);

class SegmentLog {
 public:
  // Opens dir (creating it, 0750) and recovers it. `geometry` gives the
  // span, salt, ring segment, alignment and partition of new files; files
  // already there must have the same, or the open fails naming the file.
  // `start` is where an empty directory begins (the ring's oldest frame).
  static Result<SegmentLog> open(const std::string& dir, const SegmentHeader& geometry,
                                 std::uint64_t start);
  SegmentLog(SegmentLog&&) noexcept;
  SegmentLog& operator=(SegmentLog&&) noexcept;
  ~SegmentLog();

  const Recovery& recovery() const noexcept { return recovery_; }
  std::uint64_t end() const noexcept { return end_; }
  std::uint64_t start() const noexcept { return start_; }

  // Appends the settled frames [position, position + frames.size()) read
  // from the ring; position must be end(). Split where they cross a span
  // (a new file each time), each part one batch. On an error (a full disk,
  // EIO) nothing past end() is in the files, and end() says how far it
  // got: the parts before a file that could not be made are kept.
  Outcome append(std::uint64_t position, std::span<const std::byte> frames);
  // Records that [end(), to) was lost (an `overwrite` ring lapped its
  // spiller), in Gap batches, one per span crossed.
  Outcome append_gap(std::uint64_t to);
  // fdatasync of the file being appended to (earlier files were synced
  // when they were closed).
  Outcome sync();
  // sync(), then a checkpoint at end(): a later recovery reads only what
  // comes after it.
  Outcome checkpoint();
  // A clean close: a checkpoint that says so, then the files closed.
  Outcome close();

  // --- for a writer that does its own I/O (the spiller's io_uring) ---
  // A batch boundary in the files: the position there and where it lies.
  struct Mark {
    std::uint64_t position = 0;
    std::uint64_t base = 0;    // its file
    std::uint64_t offset = 0;  // its file offset
  };
  // Where the batch `b` (b.position == end(), ending inside end()'s span)
  // goes: its file's descriptor and offset. Takes the file space as if it
  // were written: end() moves to b.end. When end() is a span's end (or
  // nothing was appended yet) a new file is made first, synchronously, and
  // the one before it synced: the caller has no write to it in flight
  // then. The caller writes the header and frames there (the same bytes
  // append() would) and, if that write fails, appends nothing more (the
  // next open's recovery cuts the file after the last complete batch).
  struct Placed {
    int fd = -1;
    std::uint64_t offset = 0;
    Mark end;  // after the batch
  };
  Result<Placed> place(const BatchHeader& b);
  // Positions left in the current file's span (0: the next place() rolls).
  std::uint64_t room() const noexcept { return fd_ < 0 ? 0 : base_ + geometry_.span - end_; }
  // The file's descriptor place() would use without rolling (-1: none yet).
  int file() const noexcept { return fd_; }
  // A checkpoint at `m`, which the caller synced (fdatasync after the
  // writes below it completed), in the current file or before it.
  Outcome checkpoint_at(const Mark& m);

  // --- retention ---
  // Removes whole files, oldest first, while the files hold more than
  // max_bytes (0: no limit) or the oldest was last written to before
  // older_than_ns (CLOCK_REALTIME; 0: no limit). Never the file being
  // appended to, nor the last checkpoint's file or any after it (recovery
  // keeps a checkpoint it can use). The directory is fsynced after a
  // removal; start() moves to the oldest file left. A reader with a removed
  // file open reads it to its end (the kernel frees it at its close).
  struct Removed {
    std::uint64_t files = 0;
    std::uint64_t bytes = 0;
  };
  Result<Removed> remove_old(std::uint64_t max_bytes, std::int64_t older_than_ns);

 private:
  SegmentLog() = default;
  Outcome recover();
  std::string file_path(std::uint64_t base) const;
  Outcome write_checkpoint(const Mark& m, bool clean);
  std::optional<Checkpoint> usable_checkpoint(const std::vector<std::uint64_t>& bases);
  Outcome roll(std::uint64_t base);
  Outcome write_batch(const BatchHeader& b, std::span<const std::byte> frames);
  void close_file() noexcept;

  std::string dir_;
  SegmentHeader geometry_{};
  int dir_fd_ = -1;
  int fd_ = -1;               // the file being appended to
  std::uint64_t base_ = 0;    // its base
  std::uint64_t offset_ = 0;  // its append offset
  std::uint64_t start_ = 0;
  std::uint64_t end_ = 0;
  std::uint64_t checkpoint_base_ = ~std::uint64_t{0};  // the last checkpoint's file (none: max)
  Recovery recovery_;
};

}  // namespace shmbus::log
