#include "log/segment_format.hpp"

#include <algorithm>
#include <climits>
#include <cstring>

#include "log/crc32c.hpp"
#include "shmbus/detail/frame.hpp"

namespace shmbus::log {
namespace {

// How far past a zero batch magic a scan looks for data.
constexpr std::uint64_t kZeroWindow = 3 * 4096;

bool power_of_two(std::uint64_t v) noexcept {
  return v != 0 && (v & (v - 1)) == 0;
}

std::span<const std::byte> bytes_of(const void* p, std::size_t n) noexcept {
  return {static_cast<const std::byte*>(p), n};
}

std::uint32_t segment_crc(const SegmentHeader& h) noexcept {
  return crc32c(bytes_of(&h, sizeof h).subspan(16));
}
std::uint32_t batch_crc(const BatchHeader& h) noexcept {
  return crc32c(bytes_of(&h, sizeof h).subspan(8));
}

struct Walk {
  std::uint32_t frames = 0;
  std::int64_t min_timestamp = 0;
  std::int64_t max_timestamp = 0;
};

// Walks the frames of [position, position + size) held in `frames` with
// the ring's own step: each must be settled and inside its ring segment,
// and the last must end exactly at the end. The bytes are private memory
// (a file read in, or what the spiller staged), so a relaxed load is a
// plain read here.
std::optional<Walk> walk(const SegmentHeader& s, std::uint64_t position,
                         std::span<const std::byte> frames) noexcept {
  Walk w;
  bool stamped = false;
  std::uint64_t p = position;
  const std::uint64_t end = position + frames.size();
  if (position % s.alignment != 0) return std::nullopt;
  while (p < end) {
    if (end - p < detail::kFrameHeaderBytes) return std::nullopt;
    auto* f = const_cast<std::byte*>(frames.data() + (p - position));
    const detail::FrameLook l =
        detail::look_at_frame<std::memory_order_relaxed>(f, p, s.salt, s.ring_segment, s.alignment);
    if (!l.settled() || l.next == 0 || l.next > end) return std::nullopt;
    if (l.data() && l.timestamp != 0) {
      w.min_timestamp = stamped ? std::min(w.min_timestamp, l.timestamp) : l.timestamp;
      w.max_timestamp = stamped ? std::max(w.max_timestamp, l.timestamp) : l.timestamp;
      stamped = true;
    }
    ++w.frames;
    p = l.next;
  }
  return w;
}

}  // namespace

bool valid_geometry(const SegmentHeader& h) noexcept {
  return power_of_two(h.span) && power_of_two(h.ring_segment) && power_of_two(h.alignment) &&
         h.alignment >= 8 && h.ring_segment >= h.alignment && h.span >= h.ring_segment &&
         h.base % h.span == 0 && h.base <= ~std::uint64_t{0} - h.span;
}

void seal(SegmentHeader& h) noexcept {
  h.magic = kSegmentMagic;
  h.version = kSegmentVersion;
  h.header_crc = segment_crc(h);
}

bool check(const SegmentHeader& h) noexcept {
  return h.magic == kSegmentMagic && h.version == kSegmentVersion &&
         h.header_crc == segment_crc(h) && valid_geometry(h);
}

void seal(BatchHeader& b) noexcept {
  b.magic = kBatchMagic;
  b.header_crc = batch_crc(b);
}

void seal(Checkpoint& c) noexcept {
  c.magic = kCheckpointMagic;
  c.version = kCheckpointVersion;
  c.crc = crc32c(bytes_of(&c, sizeof c).subspan(16));
}

bool check(const Checkpoint& c) noexcept {
  return c.magic == kCheckpointMagic && c.version == kCheckpointVersion &&
         c.crc == crc32c(bytes_of(&c, sizeof c).subspan(16)) && c.offset >= kSegmentDataAt &&
         c.offset % 8 == 0 && c.position >= c.base;
}

std::optional<BatchHeader> frames_batch(const SegmentHeader& segment, std::uint64_t position,
                                        std::span<const std::byte> frames) noexcept {
  if (frames.empty() || frames.size() > UINT32_MAX ||
      position + frames.size() > segment.base + segment.span)
    return std::nullopt;
  const std::optional<Walk> w = walk(segment, position, frames);
  if (!w) return std::nullopt;
  BatchHeader b{};
  b.magic = kBatchMagic;
  b.position = position;
  b.bytes = static_cast<std::uint32_t>(frames.size());
  b.end = position + frames.size();
  b.kind = BatchKind::Frames;
  b.frames = w->frames;
  b.min_timestamp = w->min_timestamp;
  b.max_timestamp = w->max_timestamp;
  b.data_crc = crc32c(frames);
  seal(b);
  return b;
}

BatchHeader gap_batch(std::uint64_t from, std::uint64_t to) noexcept {
  BatchHeader b{};
  b.magic = kBatchMagic;
  b.position = from;
  b.end = to;
  b.kind = BatchKind::Gap;
  b.data_crc = crc32c({});
  seal(b);
  return b;
}

std::string check_batch_header(const SegmentHeader& s, const BatchHeader& b,
                               std::uint64_t expected) {
  const std::uint64_t limit = s.base + s.span;
  if (b.magic != kBatchMagic) return "no batch magic";
  if (b.header_crc != batch_crc(b)) return "header CRC mismatch";
  if (b.position != expected)
    return "position " + std::to_string(b.position) + ", expected " + std::to_string(expected);
  if (b.kind == BatchKind::Gap) {
    if (b.bytes != 0 || b.end <= b.position || b.end > limit || b.end % s.alignment != 0)
      return "bad gap range";
  } else if (b.kind == BatchKind::Frames) {
    if (b.bytes == 0 || b.position >= limit || b.bytes > limit - b.position ||
        b.end != b.position + b.bytes)
      return "length " + std::to_string(b.bytes) + " out of bounds";
  } else {
    return "unknown kind " + std::to_string(static_cast<unsigned>(b.kind));
  }
  return {};
}

std::string check_batch_frames(const SegmentHeader& s, const BatchHeader& b,
                               std::span<const std::byte> frames) {
  if (crc32c(frames) != b.data_crc) return "data CRC mismatch";
  const std::optional<Walk> w = walk(s, b.position, frames);
  if (!w || w->frames != b.frames) return "its frames do not walk to its end";
  return {};
}

SegmentScan scan_segment(std::span<const std::byte> file, std::uint64_t base,
                         std::optional<ScanFrom> from) {
  SegmentScan r;
  r.end = base;
  SegmentHeader s;
  if (file.size() < kSegmentDataAt) {
    r.stop = "shorter than its header block (" + std::to_string(file.size()) + " bytes)";
    return r;
  }
  std::memcpy(&s, file.data(), sizeof s);
  if (!check(s)) {
    r.stop = "no valid segment header";
    return r;
  }
  if (s.base != base) {
    r.stop =
        "its header says base " + std::to_string(s.base) + ", its name " + std::to_string(base);
    return r;
  }
  r.header_ok = true;
  r.valid_bytes = kSegmentDataAt;
  const std::uint64_t limit = base + s.span;
  std::uint64_t at = kSegmentDataAt;
  auto stop = [&](std::string why) {
    r.stop = "batch at file offset " + std::to_string(at) + ": " + std::move(why);
    return false;
  };
  if (from) {
    if (from->offset < kSegmentDataAt || from->offset > file.size() || from->position < base ||
        from->position > limit) {
      stop("the resume point (offset " + std::to_string(from->offset) + ", position " +
           std::to_string(from->position) + ") lies outside the file");
      return r;
    }
    at = r.valid_bytes = from->offset;
    r.end = from->position;
  }
  const std::uint64_t first = at;
  // The batches, one by one, until one fails or the data ends; true when
  // they end at zeros (a clean end, nothing more to look at).
  const bool ended_at_zeros = [&] {
    while (file.size() - at >= sizeof(BatchHeader)) {
      BatchHeader b;
      std::memcpy(&b, file.data() + at, sizeof b);
      if (b.magic == 0) {
        // The zeros after the last batch: a clean end, unless data follows
        // close behind them (a zeroed page, not the preallocated tail; the
        // window keeps a scan from reading a whole preallocation).
        const auto rest = file.subspan(at, std::min<std::uint64_t>(file.size() - at, kZeroWindow));
        const auto data =
            std::find_if(rest.begin(), rest.end(), [](std::byte x) { return x != std::byte{0}; });
        if (data != rest.end())
          return stop("zeros, then data again at file offset " +
                      std::to_string(at + static_cast<std::uint64_t>(data - rest.begin())));
        return true;
      }
      if (std::string why = check_batch_header(s, b, r.end); !why.empty()) return stop(why);
      if (b.kind == BatchKind::Gap) {
        r.gaps += b.end - b.position;
      } else {
        if (file.size() - at - sizeof b < b.bytes)
          return stop("torn: its frames end past the file");
        const std::span<const std::byte> frames = file.subspan(at + sizeof b, b.bytes);
        if (std::string why = check_batch_frames(s, b, frames); !why.empty()) return stop(why);
        r.frames += b.frames;
      }
      ++r.batches;
      at += sizeof b + b.bytes;
      r.end = b.end;
      r.valid_bytes = at;
    }
    return false;
  }();
  r.scanned_bytes = at - first;
  if (ended_at_zeros || !r.stop.empty()) return r;
  // Fewer bytes than a batch header are left: zeros, or a torn header.
  if (at < file.size() && std::any_of(file.begin() + static_cast<std::ptrdiff_t>(at), file.end(),
                                      [](std::byte x) { return x != std::byte{0}; }))
    r.stop = "torn batch header at file offset " + std::to_string(at);
  return r;
}

}  // namespace shmbus::log
