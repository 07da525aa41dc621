#include "log/segment_reader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "log/segment_log.hpp"
#include "shm/file.hpp"
#include "shmbus/detail/frame.hpp"

namespace shmbus::log {
namespace {

// Reads exactly n bytes at off; false at a short read (the file ends there).
Result<bool> read_at(int fd, void* to, std::size_t n, std::uint64_t off) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r =
        ::pread(fd, static_cast<std::byte*>(to) + done, n - done, static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return shm::sys_error(errno, "cannot read segment file");
    if (r == 0) return false;
    done += static_cast<std::size_t>(r);
  }
  return true;
}

}  // namespace

Result<SegmentReader> SegmentReader::open(const std::string& dir) {
  auto bases = list_segments(dir);
  if (!bases) return bases.error();
  if (bases->empty()) return Error{ENOENT, "no segment files in " + dir};
  SegmentReader r;
  r.dir_ = dir;
  if (Outcome ok = r.open_file(bases->front()); !ok) return ok.error();
  r.start_ = r.geometry_.base;
  // The oldest file may start inside its span, with a Gap batch first.
  auto first = r.read_header();
  if (!first) return first.error();
  if (*first && (*first)->kind == BatchKind::Gap) r.start_ = (*first)->end;
  r.expected_ = r.geometry_.base;
  r.position_ = r.start_;
  return r;
}

SegmentReader::SegmentReader(SegmentReader&& o) noexcept {
  *this = std::move(o);
}
SegmentReader& SegmentReader::operator=(SegmentReader&& o) noexcept {
  if (this != &o) {
    close_file();
    dir_ = std::move(o.dir_);
    geometry_ = o.geometry_;
    start_ = o.start_;
    fd_ = std::exchange(o.fd_, -1);
    base_ = o.base_;
    offset_ = o.offset_;
    expected_ = o.expected_;
    position_ = o.position_;
    buf_ = std::move(o.buf_);
  }
  return *this;
}
SegmentReader::~SegmentReader() {
  close_file();
}

void SegmentReader::close_file() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Outcome SegmentReader::open_file(std::uint64_t base) {
  // On failure no file is open: the reader's place stays as it was.
  close_file();
  const std::string path = dir_ + "/" + segment_name(base);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return shm::sys_error(errno, "cannot open segment file " + path);
  SegmentHeader h{};
  auto got = read_at(fd, &h, sizeof h, 0);
  std::optional<Error> bad;
  if (!got)
    bad = got.error();
  else if (!*got || !check(h) || h.base != base)
    bad = Error{EPROTO, "segment file " + path + " has no valid header"};
  else if (geometry_.span != 0 && (h.span != geometry_.span || h.salt != geometry_.salt))
    bad = Error{EPROTO, "segment file " + path + " is of another partition (span or salt)"};
  if (bad) {
    ::close(fd);
    return *bad;
  }
  fd_ = fd;
  geometry_ = h;
  base_ = base;
  offset_ = kSegmentDataAt;
  expected_ = base;
  return Done{};
}

// The header of the batch at offset_, if one that checks is there yet.
Result<std::optional<BatchHeader>> SegmentReader::read_header() {
  BatchHeader b{};
  auto got = read_at(fd_, &b, sizeof b, offset_);
  if (!got) return got.error();
  if (!*got || !check_batch_header(geometry_, b, expected_).empty())
    return std::optional<BatchHeader>{};
  return std::optional<BatchHeader>{b};
}

Error SegmentReader::below_start(std::uint64_t position) const {
  return Error{ERANGE, "position " + std::to_string(position) + " is below the oldest on disk in " +
                           dir_ + ", " + std::to_string(start_) +
                           " (older files were removed by retention)"};
}

bool SegmentReader::removed(std::uint64_t base) {
  auto bases = list_segments(dir_);
  if (!bases || bases->empty() || bases->front() <= base) return false;
  start_ = std::max(start_, bases->front());
  return true;
}

Outcome SegmentReader::seek(std::uint64_t position) {
  if (position < start_) return below_start(position);
  const std::uint64_t base = position - position % geometry_.span;
  if (base != base_ || position < expected_) {
    if (Outcome ok = open_file(base); !ok) {
      if (ok.error().code != ENOENT) return ok;
      if (removed(base)) return below_start(position);
      // Not made yet: the position is ahead of the files; next() waits.
      close_file();
      base_ = base;
      expected_ = base;
    }
  }
  position_ = position;
  return Done{};
}

Result<std::optional<SegmentReader::Batch>> SegmentReader::next(std::uint64_t complete_below) {
  auto damaged = [&](const std::string& why) {
    return Error{EPROTO, "segment file " + dir_ + "/" + segment_name(base_) + ": batch at offset " +
                             std::to_string(offset_) + " (position " + std::to_string(expected_) +
                             "), which its writer completed: " + why};
  };
  for (;;) {
    if (fd_ < 0) {
      if (Outcome ok = open_file(base_); !ok) {
        if (ok.error().code == ENOENT && removed(base_)) return below_start(position_);
        const std::string after = dir_ + "/" + segment_name(base_ + geometry_.span);
        if (ok.error().code == ENOENT || ::access(after.c_str(), F_OK) != 0)
          return std::optional<Batch>{};  // the frontier (above)
        return ok.error();
      }
    }
    if (expected_ == base_ + geometry_.span) {  // this file is complete
      const std::uint64_t done = base_;
      if (Outcome ok = open_file(done + geometry_.span); !ok) {
        // Not made yet, or being made (its header not written yet): the
        // frontier, unless a file after it shows that it is finished.
        const std::string after = dir_ + "/" + segment_name(done + 2 * geometry_.span);
        if (ok.error().code == ENOENT && removed(done + geometry_.span)) {
          close_file();
          base_ = done + geometry_.span;
          expected_ = position_ = base_;
          return below_start(base_);
        }
        if (ok.error().code != ENOENT && ::access(after.c_str(), F_OK) == 0) return ok.error();
        close_file();
        base_ = done + geometry_.span;
        expected_ = base_;
        return std::optional<Batch>{};
      }
      continue;
    }
    auto header = read_header();
    if (!header) return header.error();
    if (!*header) {
      if (expected_ < complete_below) return damaged("no valid batch header");
      return std::optional<Batch>{};  // the frontier: nothing more yet
    }
    const BatchHeader b = **header;
    const std::uint64_t at = offset_;
    if (b.kind == BatchKind::Gap) {
      offset_ += sizeof b;
      expected_ = b.end;
      if (time_floor_) position_ = std::max(position_, b.end);
      if (b.end <= position_) continue;
      Batch out{BatchKind::Gap, std::max(position_, b.position), b.end, {}};
      position_ = b.end;
      return std::optional<Batch>{out};
    }
    // Before the position asked for, or (find_time) holding no stamp at or
    // after the time: skip it unread. max_timestamp is 0 when none is stamped.
    if (time_floor_ && b.max_timestamp < *time_floor_) position_ = std::max(position_, b.end);
    if (b.end <= position_) {
      offset_ += sizeof b + b.bytes;
      expected_ = b.end;
      continue;
    }
    buf_.resize(b.bytes);
    auto got = read_at(fd_, buf_.data(), b.bytes, at + sizeof b);
    if (!got) return got.error();
    // Seen half written, or not yet written: the frontier.
    if (!*got || !check_batch_frames(geometry_, b, buf_).empty()) {
      if (b.end <= complete_below)
        return damaged(!*got ? "its frames end past the file"
                             : check_batch_frames(geometry_, b, buf_));
      return std::optional<Batch>{};
    }
    offset_ += sizeof b + b.bytes;
    expected_ = b.end;
    if (time_floor_) {  // the first message stamped at or after it, from position_
      for (std::uint64_t q = b.position; q < b.end;) {
        const detail::FrameLook l = detail::look_at_frame<std::memory_order_relaxed>(
            buf_.data() + (q - b.position), q, geometry_.salt, geometry_.ring_segment,
            geometry_.alignment);
        if (l.next == 0) break;  // cannot happen: the batch checked
        if (q >= position_ && l.data() && l.timestamp != 0 && l.timestamp >= *time_floor_) {
          position_ = q;
          break;
        }
        q = l.next;
      }
      time_floor_.reset();
    }
    // From position_: walk to it, a frame boundary of this batch.
    std::uint64_t p = b.position;
    while (p < position_) {
      const detail::FrameLook l = detail::look_at_frame<std::memory_order_relaxed>(
          buf_.data() + (p - b.position), p, geometry_.salt, geometry_.ring_segment,
          geometry_.alignment);
      if (l.next == 0) break;  // cannot happen: the batch checked, its frames walk
      p = l.next;
    }
    if (p != position_)
      return Error{EINVAL, "position " + std::to_string(position_) +
                               " is not a frame boundary on disk in " + dir_};
    Batch out{BatchKind::Frames, p, b.end,
              std::span<const std::byte>(buf_).subspan(p - b.position)};
    position_ = b.end;
    return std::optional<Batch>{out};
  }
}

Result<std::optional<std::uint64_t>> SegmentReader::find_time(std::int64_t t,
                                                              std::uint64_t complete_below) {
  if (Outcome ok = seek(start_); !ok) return ok.error();
  time_floor_ = t;
  auto b = next(complete_below);
  time_floor_.reset();
  if (!b) return b.error();
  if (!*b) return std::optional<std::uint64_t>{};
  return std::optional<std::uint64_t>{(*b)->position};
}

}  // namespace shmbus::log
