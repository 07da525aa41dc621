#include "log/segment_log.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>

#include "shm/clock.hpp"
#include "shm/file.hpp"

namespace shmbus::log {
namespace {

namespace fs = std::filesystem;
using shm::sys_error;

// A 20-digit base and ".seg", or nothing.
bool parse_name(const std::string& name, std::uint64_t& base) {
  if (name.size() != 24 || name.compare(20, 4, ".seg") != 0) return false;
  base = 0;
  for (int i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    const std::uint64_t digit = static_cast<std::uint64_t>(name[i] - '0');
    if (base > (~std::uint64_t{0} - digit) / 10) return false;
    base = base * 10 + digit;
  }
  return true;
}

// A file's bytes, mapped read-only for a scan.
class Mapped {
 public:
  explicit Mapped(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size <= 0) return;
    void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      error_ = errno;
      return;
    }
    data_ = static_cast<const std::byte*>(p);
    size_ = static_cast<std::size_t>(st.st_size);
  }
  ~Mapped() {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
  }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  int error() const noexcept { return error_; }

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  int error_ = 0;
};

// The same ring wrote it: its frames can be followed by ours in one file.
bool same_ring(const SegmentHeader& a, const SegmentHeader& b) noexcept {
  return a.span == b.span && a.salt == b.salt && a.ring_segment == b.ring_segment &&
         a.alignment == b.alignment && a.partition == b.partition;
}

}  // namespace

std::string SegmentLog::file_path(std::uint64_t base) const {
  return dir_ + "/" + segment_name(base);
}

std::string segment_name(std::uint64_t base) {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu.seg", static_cast<unsigned long long>(base));
  return name;
}

Result<SegmentLog> SegmentLog::open(const std::string& dir, const SegmentHeader& geometry,
                                    std::uint64_t start) {
  SegmentHeader g = geometry;
  g.base = 0;
  if (!valid_geometry(g))
    return Error{EINVAL, "segment geometry for " + dir +
                             " is not sound (span, ring segment and alignment: powers of two, "
                             "span >= ring segment >= alignment >= 8)"};
  if (Outcome made = shm::make_directory(dir); !made) return made.error();
  {
    // The directory's entry in its parent must survive a power loss too
    // (this run may have made it, or one that crashed before syncing it).
    const std::string parent = fs::path(dir).parent_path().empty()
                                   ? std::string(".")
                                   : fs::path(dir).parent_path().string();
    const int pfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const bool synced = pfd >= 0 && ::fsync(pfd) == 0;
    const int err = errno;
    if (pfd >= 0) ::close(pfd);
    if (!synced) return sys_error(err, "cannot fsync " + parent + ", the parent of " + dir);
  }
  SegmentLog log;
  log.dir_ = dir;
  log.geometry_ = g;
  log.start_ = log.end_ = start;
  log.dir_fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (log.dir_fd_ < 0) return sys_error(errno, "cannot open " + dir);
  if (Outcome r = log.recover(); !r) return r.error();
  return log;
}

SegmentLog::SegmentLog(SegmentLog&& o) noexcept {
  *this = std::move(o);
}

SegmentLog& SegmentLog::operator=(SegmentLog&& o) noexcept {
  if (this != &o) {
    close_file();
    if (dir_fd_ >= 0) ::close(dir_fd_);
    dir_ = std::move(o.dir_);
    geometry_ = o.geometry_;
    dir_fd_ = std::exchange(o.dir_fd_, -1);
    fd_ = std::exchange(o.fd_, -1);
    base_ = o.base_;
    offset_ = o.offset_;
    start_ = o.start_;
    end_ = o.end_;
    checkpoint_base_ = o.checkpoint_base_;
    recovery_ = std::move(o.recovery_);
  }
  return *this;
}

SegmentLog::~SegmentLog() {
  close_file();
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

void SegmentLog::close_file() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<std::vector<std::uint64_t>> list_segments(const std::string& dir) {
  std::vector<std::uint64_t> bases;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::uint64_t base;
    if (parse_name(it->path().filename().string(), base)) bases.push_back(base);
  }
  if (ec) return Error{ec.value(), "cannot read directory " + dir + ": " + ec.message()};
  std::sort(bases.begin(), bases.end());
  return bases;
}

Outcome SegmentLog::recover() {
  auto listed = list_segments(dir_);
  if (!listed) return listed.error();
  std::vector<std::uint64_t> bases = std::move(*listed);

  Recovery& r = recovery_;
  const std::optional<Checkpoint> cp = usable_checkpoint(bases);
  r.from_checkpoint = cp.has_value();
  if (cp) checkpoint_base_ = cp->base;
  std::size_t kept = 0;
  bool damaged = false;
  SegmentHeader last{};  // the last kept file's header
  for (; kept < bases.size() && !damaged; ++kept) {
    const std::uint64_t base = bases[kept];
    const std::string path = file_path(base);
    if (cp && base < cp->base) {  // vouched for: full, and continued by the next
      if (kept == 0) start_ = base;
      r.end = base + geometry_.span;
      continue;
    }
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return sys_error(errno, "cannot open segment " + path);
    SegmentScan s;
    SegmentHeader h{};
    {
      Mapped m(fd);
      if (m.error() != 0) {
        ::close(fd);
        return sys_error(m.error(), "cannot map segment " + path);
      }
      s = scan_segment(m.bytes(), base,
                       cp && base == cp->base
                           ? std::optional<ScanFrom>(ScanFrom{cp->offset, cp->position})
                           : std::nullopt);
      if (m.bytes().size() >= sizeof h) std::memcpy(&h, m.bytes().data(), sizeof h);
    }
    if (s.header_ok && h.span != geometry_.span) {
      ::close(fd);
      return Error{EINVAL, "segment " + path + " has a span of " + std::to_string(h.span) +
                               " positions, this partition " + std::to_string(geometry_.span)};
    }
    if (!s.header_ok) {
      struct stat st {};
      ::fstat(fd, &st);
      ::close(fd);
      // Another version's file: not ours to judge, nor to delete.
      if (h.magic == kSegmentMagic && h.version != kSegmentVersion)
        return Error{EINVAL, "segment " + path + " has format version " +
                                 std::to_string(h.version) + "; this shmbus reads version " +
                                 std::to_string(kSegmentVersion) + " (nothing was changed)"};
      // A last file that holds no more than its header block is a creation
      // cut short (roll() syncs the header before any batch): it goes. A
      // damaged header in front of data is not guessed at, and not deleted.
      if (kept + 1 != bases.size() || static_cast<std::uint64_t>(st.st_size) > kSegmentDataAt)
        return Error{EUCLEAN, "segment " + path + ": " + s.stop +
                                  ", and it holds data; refusing to recover " + dir_ +
                                  " (nothing was changed)"};
      r.damage = path + ": " + s.stop + " (a file cut short at its creation)";
      damaged = true;
      break;  // this file goes
    }
    // It must start where the one before it ended (which was full): a file
    // missing or cut in the middle of the directory is not repaired by
    // deleting what follows it.
    if (kept != 0 && r.end != base) {
      ::close(fd);
      return Error{EUCLEAN, "segment " + path + " does not start where the one before it ended (" +
                                std::to_string(r.end) + "); refusing to recover " + dir_ +
                                " (nothing was changed)"};
    }
    if (kept == 0) start_ = base;
    r.batches += s.batches;
    r.frames += s.frames;
    r.scanned_bytes += s.scanned_bytes;
    r.end = s.end;
    if (!s.stop.empty()) {
      struct stat st {};
      ::fstat(fd, &st);
      r.truncated_bytes = static_cast<std::uint64_t>(st.st_size) - s.valid_bytes;
      r.damage = path + ": " + s.stop;
      damaged = true;
      if (::ftruncate(fd, static_cast<off_t>(s.valid_bytes)) != 0 || ::fdatasync(fd) != 0) {
        const int err = errno;
        ::close(fd);
        return sys_error(err, "cannot truncate damaged segment " + path);
      }
    }
    close_file();
    fd_ = fd;
    base_ = base;
    offset_ = s.valid_bytes;
    last = h;
  }
  // Everything after the first damaged file, or its successor that does not
  // continue it, goes; a file with no valid header goes with them.
  for (std::size_t i = kept; i < bases.size(); ++i) {
    const std::string path = file_path(bases[i]);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return sys_error(errno, "cannot remove segment " + path + " after damage");
    ++r.removed_segments;
  }
  if (r.removed_segments != 0 && ::fsync(dir_fd_) != 0)
    return sys_error(errno, "cannot fsync " + dir_);
  r.segments = kept;
  // A checkpoint not used, or whose file went, vouches for files that are
  // no longer what it saw: it goes before anything is appended.
  if (cp && std::find(bases.begin(), bases.begin() + static_cast<std::ptrdiff_t>(kept), cp->base) ==
                bases.begin() + static_cast<std::ptrdiff_t>(kept))
    r.from_checkpoint = false;
  if (!r.from_checkpoint) {
    const std::string path = dir_ + "/checkpoint";
    if (::unlink(path.c_str()) == 0) {
      if (::fsync(dir_fd_) != 0) return sys_error(errno, "cannot fsync " + dir_);
    } else if (errno != ENOENT) {
      return sys_error(errno, "cannot remove the unused checkpoint " + path);
    }
  }
  if (kept == 0) {
    r.end = end_;
    r.start = start_;
    return Done{};
  }
  r.start = start_;
  end_ = r.end;
  r.clean = cp && cp->clean != 0 && cp->position == end_ && r.damage.empty();
  // The file appended to next must hold the current ring's frames.
  if (end_ < base_ + geometry_.span && !same_ring(last, geometry_))
    return Error{EINVAL, "segment " + file_path(base_) +
                             " was written from another ring (salt, geometry or partition "
                             "differ) and is not full: cannot append to it"};
  return Done{};
}

// The checkpoint, when it is sound and matches the files: its file is
// there and long enough, and the files before it follow each other span by
// span from the first (else recovery reads everything, and says why).
std::optional<Checkpoint> SegmentLog::usable_checkpoint(const std::vector<std::uint64_t>& bases) {
  const std::string path = dir_ + "/checkpoint";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) recovery_.checkpoint_note = path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  Checkpoint c{};
  const ssize_t n = ::pread(fd, &c, sizeof c, 0);
  ::close(fd);
  auto refuse = [&](const std::string& why) {
    recovery_.checkpoint_note = path + ": " + why + "; every file is scanned";
    return std::nullopt;
  };
  if (n != static_cast<ssize_t>(sizeof c) || !check(c)) return refuse("not a valid checkpoint");
  if (c.base % geometry_.span != 0 || c.position > c.base + geometry_.span)
    return refuse("its position is not inside its file's span");
  const auto at = std::find(bases.begin(), bases.end(), c.base);
  if (at == bases.end()) return refuse("its file " + segment_name(c.base) + " is missing");
  for (auto i = bases.begin(); i != at; ++i)
    if (*(i + 1) != *i + geometry_.span) return refuse("the files before it do not follow");
  struct stat st {};
  if (::stat(file_path(c.base).c_str(), &st) != 0 ||
      static_cast<std::uint64_t>(st.st_size) < c.offset)
    return refuse("its file is shorter than it says");
  return c;
}

Outcome SegmentLog::write_checkpoint(const Mark& m, bool clean) {
  Checkpoint c{};
  c.position = m.position;
  c.base = m.base;
  c.offset = m.offset;
  c.clean = clean ? 1 : 0;
  c.written_ns = shm::realtime_ns();
  seal(c);
  const std::string tmp = dir_ + "/checkpoint.tmp", path = dir_ + "/checkpoint";
  const int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0640);
  if (fd < 0) return sys_error(errno, "cannot create " + tmp);
  const bool written =
      ::pwrite(fd, &c, sizeof c, 0) == static_cast<ssize_t>(sizeof c) && ::fdatasync(fd) == 0;
  const int err = errno != 0 ? errno : EIO;
  ::close(fd);
  if (!written) return sys_error(err, "cannot write " + tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sys_error(errno, "cannot rename " + tmp);
  if (::fsync(dir_fd_) != 0) return sys_error(errno, "cannot fsync " + dir_);
  checkpoint_base_ = m.base;
  return Done{};
}

Result<SegmentLog::Removed> SegmentLog::remove_old(std::uint64_t max_bytes,
                                                   std::int64_t older_than_ns) {
  Removed removed;
  if (max_bytes == 0 && older_than_ns == 0) return removed;
  auto bases = list_segments(dir_);
  if (!bases) return bases.error();
  struct File {
    std::uint64_t base, bytes;
    std::int64_t mtime_ns;
  };
  std::vector<File> files;
  std::uint64_t total = 0;
  for (std::uint64_t b : *bases) {
    struct stat st {};
    if (::stat(file_path(b).c_str(), &st) != 0) continue;  // removed meanwhile: not ours to count
    files.push_back({b, static_cast<std::uint64_t>(st.st_size),
                     st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec});
    total += static_cast<std::uint64_t>(st.st_size);
  }
  const std::uint64_t keep_from = std::min(fd_ >= 0 ? base_ : end_, checkpoint_base_);
  for (const File& f : files) {
    if (f.base >= keep_from) break;
    const bool too_big = max_bytes != 0 && total > max_bytes;
    const bool too_old = older_than_ns != 0 && f.mtime_ns < older_than_ns;
    if (!too_big && !too_old) break;
    if (::unlink(file_path(f.base).c_str()) != 0)
      return sys_error(errno, "cannot remove " + file_path(f.base));
    total -= f.bytes;
    ++removed.files;
    removed.bytes += f.bytes;
    start_ = f.base + geometry_.span;
  }
  if (removed.files != 0 && ::fsync(dir_fd_) != 0) return sys_error(errno, "cannot fsync " + dir_);
  return removed;
}

Outcome SegmentLog::checkpoint() {
  if (fd_ < 0) return Done{};  // nothing appended yet
  if (Outcome r = sync(); !r) return r;
  return write_checkpoint({end_, base_, offset_}, false);
}

Outcome SegmentLog::close() {
  if (fd_ >= 0) {
    if (Outcome r = sync(); !r) return r;
    if (Outcome r = write_checkpoint({end_, base_, offset_}, true); !r) return r;
  }
  close_file();
  return Done{};
}

Outcome SegmentLog::roll(std::uint64_t base) {
  if (fd_ >= 0 && ::fdatasync(fd_) != 0) return sys_error(errno, "fdatasync of " + dir_);
  close_file();
  const std::string path = file_path(base);
  const int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0640);
  if (fd < 0) return sys_error(errno, "cannot create segment " + path);
  SegmentHeader h = geometry_;
  h.base = base;
  h.created_ns = shm::realtime_ns();
  seal(h);
  std::vector<std::byte> block(kSegmentDataAt);
  std::memcpy(block.data(), &h, sizeof h);
  if (::pwrite(fd, block.data(), block.size(), 0) != static_cast<ssize_t>(block.size()) ||
      ::fdatasync(fd) != 0 || ::fsync(dir_fd_) != 0) {
    const int err = errno != 0 ? errno : EIO;
    ::close(fd);
    ::unlink(path.c_str());
    return sys_error(err, "cannot write the header of segment " + path);
  }
  fd_ = fd;
  base_ = base;
  offset_ = kSegmentDataAt;
  // A first file that starts inside its span says what it does not hold;
  // if even that fails, the file goes again, so that the next append rolls
  // anew instead of writing frames where the gap should be.
  if (end_ > base) {
    if (Outcome r = write_batch(gap_batch(base, end_), {}); !r) {
      close_file();
      ::unlink(path.c_str());
      (void)::fsync(dir_fd_);
      return r;
    }
  }
  return Done{};
}

Outcome SegmentLog::write_batch(const BatchHeader& b, std::span<const std::byte> frames) {
  iovec iov[2] = {{const_cast<BatchHeader*>(&b), sizeof b},
                  {const_cast<std::byte*>(frames.data()), frames.size()}};
  std::uint64_t done = 0;
  const std::uint64_t total = sizeof b + frames.size();
  while (done < total) {
    // Past the first iovec's end, write from the frames alone.
    const bool in_header = done < sizeof b;
    iovec rest[2] = {iov[0], iov[1]};
    int n = 2;
    if (in_header) {
      rest[0].iov_base = reinterpret_cast<std::byte*>(iov[0].iov_base) + done;
      rest[0].iov_len = sizeof b - done;
    } else {
      rest[0].iov_base = const_cast<std::byte*>(frames.data()) + (done - sizeof b);
      rest[0].iov_len = total - done;
      n = 1;
    }
    const ssize_t w = ::pwritev(fd_, rest, n, static_cast<off_t>(offset_ + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = w < 0 ? errno : ENOSPC;
      // Leave the file as it was: recovery would cut it here anyway.
      (void)::ftruncate(fd_, static_cast<off_t>(offset_));
      return sys_error(err, "cannot append to segment " + file_path(base_));
    }
    done += static_cast<std::uint64_t>(w);
  }
  offset_ += total;
  end_ = b.end;
  return Done{};
}

Outcome SegmentLog::append(std::uint64_t position, std::span<const std::byte> frames) {
  if (position != end_)
    return Error{EINVAL, "append at " + std::to_string(position) + " to " + dir_ +
                             ", whose end is " + std::to_string(end_)};
  while (!frames.empty()) {
    if (fd_ < 0 || end_ == base_ + geometry_.span) {
      if (Outcome r = roll(end_ - end_ % geometry_.span); !r) return r;
    }
    // A span boundary is a ring segment boundary, so a frame boundary.
    const std::uint64_t room = base_ + geometry_.span - end_;
    const std::span<const std::byte> part =
        frames.first(std::min<std::uint64_t>(room, frames.size()));
    SegmentHeader h = geometry_;
    h.base = base_;
    const std::optional<BatchHeader> b = frames_batch(h, end_, part);
    if (!b)
      return Error{EINVAL, "the frames at " + std::to_string(end_) +
                               " are not settled frames of this ring that end where they "
                               "say; nothing of them written"};
    if (Outcome r = write_batch(*b, part); !r) return r;
    frames = frames.subspan(part.size());
  }
  return Done{};
}

Outcome SegmentLog::append_gap(std::uint64_t to) {
  if (to % geometry_.alignment != 0)
    return Error{EINVAL, "a gap to " + std::to_string(to) + " in " + dir_ +
                             " does not end at a frame boundary"};
  while (end_ < to) {
    if (fd_ < 0 || end_ == base_ + geometry_.span) {
      if (Outcome r = roll(end_ - end_ % geometry_.span); !r) return r;
    }
    const std::uint64_t part_end = std::min(to, base_ + geometry_.span);
    if (Outcome r = write_batch(gap_batch(end_, part_end), {}); !r) return r;
  }
  return Done{};
}

Result<SegmentLog::Placed> SegmentLog::place(const BatchHeader& b) {
  if (b.position != end_)
    return Error{EINVAL, "a batch at " + std::to_string(b.position) + " for " + dir_ +
                             ", whose end is " + std::to_string(end_)};
  if (fd_ < 0 || end_ == base_ + geometry_.span) {
    if (Outcome r = roll(end_ - end_ % geometry_.span); !r) return r.error();
  }
  if (b.end > base_ + geometry_.span || b.end < b.position)
    return Error{EINVAL,
                 "a batch to " + std::to_string(b.end) + " crosses the end of " + file_path(base_)};
  Placed p{fd_, offset_, {}};
  offset_ += sizeof b + b.bytes;
  end_ = b.end;
  p.end = {end_, base_, offset_};
  return p;
}

Outcome SegmentLog::checkpoint_at(const Mark& m) {
  return write_checkpoint(m, false);
}

Outcome SegmentLog::sync() {
  if (fd_ >= 0 && ::fdatasync(fd_) != 0)
    return sys_error(errno, "fdatasync of segment " + file_path(base_));
  return Done{};
}

}  // namespace shmbus::log
