// lib/log/segment_format.hpp — the on-disk format of a durable partition's
// history: segment files of batches, each batch the ring's frames verbatim
// behind a header that checksums itself and them.
//
//   <data dir>/<topic>/<partition>/<base position, 20 digits>.seg
//
//   0       64                  4096
//   | SegmentHeader | zeros ... | batch | batch | ... | zeros (preallocated)
//
//   batch:  0                 64
//           | BatchHeader     | frames [position, position + bytes), as
//                             |  they were in the ring (commit words, pads
//                             |  and control frames included)
//
// A segment file holds the positions [base, base + span): base is a
// multiple of span, so the file of a position is arithmetic (base =
// p - p % span), and no batch crosses a file. Batches follow each other
// with no gap in the file and none in positions: a batch starts where the
// one before it ended (a lost range, when an `overwrite` ring lapped the
// spiller, is a Gap batch with no frames that says so, never a silent jump).
//
// Why the frames go verbatim: positions on disk are the ring's, so a replay
// reader walks them with the ring's own validated step (look_at_frame in
// shmbus/detail/frame.hpp) and hands over to the ring at a position both
// agree on. The commit words carry the ring's salt, which the segment
// header records.
//
// What recovery trusts (scan_segment): a batch is accepted only if its
// magic and header CRC hold (so a garbage length is never used), its
// position is the expected next one, its bytes fit the file and the
// segment's span, its data CRC holds, and its frames walk from its first
// byte to its last exactly, each committed, skipped or a pad, inside its
// ring segment. The first batch that fails ends the segment: it and
// everything after it (later segments too) are truncated, never repaired.
// All integers are little-endian, as the frames are (x86-64, AArch64).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace shmbus::log {

inline constexpr std::uint64_t kSegmentMagic = 0x3147455342534853ull;  // "SHSBSEG1"
inline constexpr std::uint32_t kSegmentVersion = 1;
inline constexpr std::uint64_t kSegmentDataAt = 4096;      // the first batch's file offset
inline constexpr std::uint32_t kBatchMagic = 0x48435442u;  // "BTCH"

struct SegmentHeader {
  std::uint64_t magic;         //  0 kSegmentMagic
  std::uint32_t version;       //  8 kSegmentVersion
  std::uint32_t header_crc;    // 12 CRC32C of the 48 bytes from 16
  std::uint64_t base;          // 16 first position of this file, a multiple of span
  std::uint64_t span;          // 24 positions per file (a power of two)
  std::uint64_t salt;          // 32 the ring's commit-word salt
  std::uint64_t ring_segment;  // 40 the ring's segment bytes: no frame crosses one
  std::uint32_t alignment;     // 48 the ring's frame alignment
  std::uint32_t partition;     // 52
  std::int64_t created_ns;     // 56 CLOCK_REALTIME
};
static_assert(sizeof(SegmentHeader) == 64);

enum class BatchKind : std::uint16_t { Frames = 1, Gap = 2 };

struct BatchHeader {
  std::uint32_t magic;         //  0 kBatchMagic
  std::uint32_t header_crc;    //  4 CRC32C of the 56 bytes from 8
  std::uint64_t position;      //  8 of the first frame; the previous batch's end
  std::uint32_t bytes;         // 16 frame bytes that follow (0 for a Gap)
  std::uint32_t frames;        // 20 frames in them, pads and control frames included
  std::int64_t min_timestamp;  // 24 of the data frames (stamps may go backwards);
  std::int64_t max_timestamp;  // 32   both 0 when none carries one
  std::uint32_t data_crc;      // 40 CRC32C of the frame bytes
  BatchKind kind;              // 44
  std::uint16_t reserved;      // 46 0
  std::uint64_t end;           // 48 position after the batch: position + bytes, or
                               //    a Gap's end (the lost range is [position, end))
  std::uint64_t reserved2;     // 56 0
};
static_assert(sizeof(BatchHeader) == 64);

// <dir>/checkpoint: the recovery point of a partition's directory, replaced
// atomically (written as checkpoint.tmp, fdatasync, rename, fsync of the
// directory). Everything below `position` is in the files and was synced
// before it was written; recovery trusts the files before `base` and scans
// from `offset` in base's file, so after a crash it reads only what came
// after the last checkpoint.
inline constexpr std::uint64_t kCheckpointMagic = 0x3150434b42534853ull;  // "SHSBKCP1"
inline constexpr std::uint32_t kCheckpointVersion = 1;

struct Checkpoint {
  std::uint64_t magic;      //  0 kCheckpointMagic
  std::uint32_t version;    //  8 kCheckpointVersion
  std::uint32_t crc;        // 12 CRC32C of the 48 bytes from 16
  std::uint64_t position;   // 16 all below it is on disk
  std::uint64_t base;       // 24 the file it lies in
  std::uint64_t offset;     // 32 its file offset there (a batch boundary)
  std::uint32_t clean;      // 40 1: written by a clean close, nothing after it
  std::uint32_t reserved;   // 44 0
  std::int64_t written_ns;  // 48 CLOCK_REALTIME
  std::uint64_t reserved2;  // 56 0
};
static_assert(sizeof(Checkpoint) == 64);

void seal(Checkpoint& c) noexcept;
bool check(const Checkpoint& c) noexcept;

// Whether a segment's geometry can hold frames at all (powers of two, the
// span a multiple of the ring segment, the alignment at least 8).
bool valid_geometry(const SegmentHeader& h) noexcept;

// Fills in the magic, version and CRC of h.
void seal(SegmentHeader& h) noexcept;
// The header is a segment header of this version with a sound geometry.
bool check(const SegmentHeader& h) noexcept;

// Fills in the magic and header CRC of b (frames_batch and gap_batch do).
void seal(BatchHeader& b) noexcept;

// A Frames batch over `frames` (the bytes that follow it) at `position`:
// counts them and their stamps, checksums them. The frames must be settled
// (committed, skipped or pads) and end exactly at position + size.
// Nothing when they do not: the spiller never writes what recovery refuses.
std::optional<BatchHeader> frames_batch(const SegmentHeader& segment, std::uint64_t position,
                                        std::span<const std::byte> frames) noexcept;
BatchHeader gap_batch(std::uint64_t from, std::uint64_t to) noexcept;

// The checks of a scan, for readers that read batch by batch: "" when b is
// a batch of the file with header s that may follow position `expected`
// (magic, header CRC, position, bounds), then when its frame bytes (b.bytes
// of them) match its data CRC and walk to its end.
std::string check_batch_header(const SegmentHeader& s, const BatchHeader& b,
                               std::uint64_t expected);
std::string check_batch_frames(const SegmentHeader& s, const BatchHeader& b,
                               std::span<const std::byte> frames);

// What a scan of one segment file's bytes accepted.
struct SegmentScan {
  bool header_ok = false;
  std::uint64_t valid_bytes = 0;  // file offset after the last accepted batch (0: no header)
  std::uint64_t end = 0;          // position after it (the base when there is none)
  std::uint64_t batches = 0;
  std::uint64_t frames = 0;
  std::uint64_t gaps = 0;  // positions lost in Gap batches
  std::string stop;        // why the scan stopped before the file's end ("" at a clean end)
  std::uint64_t scanned_bytes = 0;  // of the batches this scan read and accepted
};

// Where a scan may start instead of the first batch: a batch boundary that
// a checkpoint vouches for (segment_log.hpp).
struct ScanFrom {
  std::uint64_t offset;    // in the file
  std::uint64_t position;  // of the batch there
};

// Scans `file` (a segment file's bytes from offset 0) whose name says it
// starts at `base`. Never reads outside `file`, whatever it holds.
// With `from`, the batches before it are taken as they are, unread; a
// `from` outside the file stops the scan there (stop says so), so callers
// pass only what a checkpoint they checked vouches for.
SegmentScan scan_segment(std::span<const std::byte> file, std::uint64_t base,
                         std::optional<ScanFrom> from = std::nullopt);

}  // namespace shmbus::log
