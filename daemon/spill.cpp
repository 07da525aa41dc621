#include "spill.hpp"

#include <liburing.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "log/cursor_join.hpp"
#include "log/named_cursor.hpp"
#include "log/ring.hpp"
#include "log/segment_log.hpp"
#include "server.hpp"
#include "shm/clock.hpp"

namespace shmbus::daemon {

using log::atomic;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct SpillService::Shared {
  std::mutex m;
  std::condition_variable cv;
  bool stop = false;
  bool started = false;
  std::optional<std::vector<Wanted>> wanted;  // the newest set, not yet taken
  std::vector<std::string> deleted;           // in order, before `wanted`
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> errors{0};
  std::string bus_dir, data_dir;
  std::uint64_t span_bytes = 0;
};

namespace {

constexpr std::size_t kStagingBytes = 1u << 20;  // a write, unless one frame is larger
constexpr std::size_t kDepth = 4;                // writes in flight per partition
constexpr auto kCheckpointPeriod = 1s;
constexpr auto kRetentionPeriod = 1s;  // how often a partition's files are held to its retention
constexpr std::uint64_t kMaxRetentionMs = 1ull << 40;  // as Ring::create checks: ns fit in 63 bits
constexpr auto kAbandonWait = 1ms;
constexpr auto kLongestIdle = 1ms;
constexpr unsigned kUringEntries = 256;

struct FreeAligned {
  void operator()(std::byte* p) const noexcept { std::free(p); }
};
using Buffer = std::unique_ptr<std::byte, FreeAligned>;
Buffer aligned_buffer(std::size_t bytes) {
  void* p = nullptr;
  if (::posix_memalign(&p, 4096, bytes) != 0) throw std::bad_alloc();
  return Buffer(static_cast<std::byte*>(p));
}

std::string name_of(const std::string& topic, std::uint32_t p) {
  return topic + "." + std::to_string(p);
}

struct Partition;

// What an io_uring completion belongs to (its user_data).
struct Op {
  Partition* part;
  int slot;  // a write slot, or kSyncOp
};
constexpr int kSyncOp = -1;

struct WriteSlot {
  Buffer buf;
  std::size_t capacity = 0;
  std::size_t len = 0;   // bytes to write
  std::size_t done = 0;  // written so far (short writes go on)
  int fd = -1;
  std::uint64_t offset = 0;
  log::SegmentLog::Mark end;
  bool busy = false;
  bool complete = false;
};

struct Partition {
  std::string topic;
  std::uint32_t index = 0;
  std::string dir;  // <data_dir>/<topic>/<partition>
  std::string what;
  log::Ring ring;
  log::HeldSlot cursor;
  std::optional<log::SegmentLog> files;
  log::SegmentHeader geometry{};
  Fsync fsync = Fsync::Interval;
  std::chrono::milliseconds interval{100};
  std::uint64_t safe_from = 0;  // tail at the join: below it, copies are validated
  std::uint64_t next = 0;       // next position to copy
  std::uint64_t written = 0, durable = 0;
  log::SegmentLog::Mark written_mark, durable_mark, checkpointed;
  WriteSlot slots[kDepth];
  Op ops[kDepth];
  Op sync_op{};
  std::deque<int> order;  // slots in flight, in submission order
  bool sync_in_flight = false;
  std::uint64_t sync_for = 0;
  log::SegmentLog::Mark sync_mark;
  Clock::time_point last_sync{}, last_checkpoint{}, last_retention{};
  log::RetentionConfig retention{};
  int failed = 0;
  bool closing = false;
  bool remove_files = false;
  std::uint64_t stuck_at = ~std::uint64_t{0};
  Clock::time_point stuck_since{};

  std::size_t ops_in_flight = 0;  // submitted to io_uring, not completed
  // Nothing in flight and nothing written but not yet complete.
  bool idle_io() const { return order.empty() && !sync_in_flight; }
  // May close: nothing the kernel may still write from our buffers.
  bool quiet() const { return ops_in_flight == 0 && (failed != 0 || idle_io()); }
  std::uint64_t cursor_floor = 0;  // the cursor never moves below it (its position at open)
  log::SpillState& spill() const { return ring.spill(); }
  void publish_watermarks() {
    log::SpillState& s = spill();
    atomic(s.committed).store(next, std::memory_order_release);
    atomic(s.written).store(written, std::memory_order_release);
    atomic(s.durable).store(durable, std::memory_order_release);
  }
};

class Spiller {
 public:
  explicit Spiller(SpillService::Shared& shared) : sh_(shared) {}

  void run() {
    const char* off = std::getenv("SHMBUS_SPILL_NO_IO_URING");
    if (off != nullptr && off[0] == '1') {
      logf("info", "spill: io_uring off (SHMBUS_SPILL_NO_IO_URING=1): pwrite and fdatasync");
    } else if (const int r = ::io_uring_queue_init(kUringEntries, &uring_, 0); r < 0) {
      logf("warning", std::string("spill: io_uring unavailable (") + std::strerror(-r) +
                          "): pwrite and fdatasync instead");
    } else {
      have_uring_ = true;
    }
    auto idle = 50us;
    for (;;) {
      const bool stopping = take_commands();
      bool worked = false;
      for (auto& p : parts_) worked |= pump(*p);
      for (auto& p : parts_) retain(*p);
      if (have_uring_ && in_flight_ > 0) {
        ::io_uring_submit(&uring_);
        reap(worked ? 0us : 200us);
        worked = true;
      }
      finish_closing();
      if (stopping && parts_.empty()) break;
      if (worked) {
        idle = 50us;
        continue;
      }
      std::unique_lock lock(sh_.m);
      auto posted = [&] { return sh_.stop || sh_.wanted || !sh_.deleted.empty(); };
      if (parts_.empty())
        sh_.cv.wait(lock, posted);  // nothing to follow: no wake-ups until something is posted
      else
        sh_.cv.wait_for(lock, idle, posted);
      idle = std::min<std::chrono::microseconds>(idle * 2, kLongestIdle);
    }
    if (have_uring_) ::io_uring_queue_exit(&uring_);
  }

 private:
  // Applies what the conductor posted; true once asked to stop.
  bool take_commands() {
    std::optional<std::vector<SpillService::Wanted>> wanted;
    std::vector<std::string> deleted;
    bool stop = false;
    {
      std::lock_guard lock(sh_.m);
      wanted.swap(sh_.wanted);
      deleted.swap(sh_.deleted);
      stop = sh_.stop;
    }
    for (const std::string& t : deleted) {
      bool open = false;
      for (auto& p : parts_)
        if (p->topic == t) {
          p->closing = p->remove_files = true;
          open = true;
        }
      if (!open)
        remove_topic_files(t);
      else
        pending_removal_.insert(t);
    }
    if (wanted) {
      std::set<std::pair<std::string, std::uint32_t>> want;
      for (const auto& w : *wanted) want.insert({w.topic, w.partition});
      for (auto& p : parts_)
        if (want.count({p->topic, p->index}) == 0) p->closing = true;
      for (const auto& [topic, index] : want) {
        const bool have = std::any_of(parts_.begin(), parts_.end(), [&](const auto& p) {
          return p->topic == topic && p->index == index && !p->closing;
        });
        // A topic deleted and made again waits until the old one's files are gone.
        if (!have && pending_removal_.count(topic) == 0)
          open(topic, index);
        else if (!have)
          reopen_.insert({topic, index});
      }
      wanted_ = std::move(want);
    }
    if (stop)
      for (auto& p : parts_) p->closing = true;
    return stop;
  }

  void remove_topic_files(const std::string& topic) {
    std::error_code ec;
    std::filesystem::remove_all(sh_.data_dir + "/" + topic, ec);
    if (ec)
      logf("error", "spill: cannot remove the segment files of deleted topic " + topic + ": " +
                        ec.message());
    else
      logf("info", "spill: removed the segment files of deleted topic " + topic);
  }

  void open(const std::string& topic, std::uint32_t index) {
    auto p = std::make_unique<Partition>();
    p->topic = topic;
    p->index = index;
    p->what = "topic " + name_of(topic, index);
    p->dir = sh_.data_dir + "/" + topic + "/" + std::to_string(index);
    auto ring = log::Ring::open(sh_.bus_dir, topic, index, true, false);
    if (!ring) return logf("error", "spill: cannot map " + p->what + ": " + ring.error().message);
    p->ring = std::move(*ring);
    const log::Ring& r = p->ring;
    const log::DurabilityConfig d = r.durability();
    if (d.durable == 0) return;
    p->fsync = static_cast<Fsync>(d.fsync);
    p->interval = std::chrono::milliseconds(d.fsync_interval_ms);
    p->retention = r.retention();
    const std::uint64_t t0 = r.tail().load(std::memory_order_acquire);
    auto held = log::hold_named(r, log::kSpillCursor, r.oldest_intact(t0));
    if (!held)
      return logf("error", "spill: " + p->what + ": cannot hold cursor " + log::kSpillCursor +
                               ": " + held.error().message + "; not spilling it");
    p->cursor = held->held;
    p->safe_from = r.tail().load(std::memory_order_seq_cst);
    const std::uint64_t at = atomic(p->cursor.slot->position).load(std::memory_order_acquire);
    p->geometry = log::SegmentHeader{};
    p->geometry.span = std::max<std::uint64_t>(sh_.span_bytes, r.segment_bytes());
    p->geometry.salt = r.salt();
    p->geometry.ring_segment = r.segment_bytes();
    p->geometry.alignment = r.alignment();
    p->geometry.partition = index;
    for (auto& s : p->slots) {
      s.capacity = kStagingBytes;
      s.buf = aligned_buffer(s.capacity);
    }
    for (std::size_t i = 0; i < kDepth; ++i) p->ops[i] = {p.get(), static_cast<int>(i)};
    p->sync_op = {p.get(), kSyncOp};
    Partition& part = *parts_.emplace_back(std::move(p));
    const auto began = Clock::now();
    auto files = log::SegmentLog::open(part.dir, part.geometry, at);
    if (!files) return fail(part, files.error().code, files.error().message);
    part.files.emplace(std::move(*files));
    // Consumers find the files through <bus dir>/<topic>.<p>.seg (replay).
    const std::string link = sh_.bus_dir + "/" + name_of(topic, index) + ".seg";
    ::unlink(link.c_str());
    if (::symlink(part.dir.c_str(), link.c_str()) != 0)
      logf("warning", "spill: cannot link " + link + " -> " + part.dir + ": " +
                          std::strerror(errno) + " (consumers cannot replay from disk)");
    const log::Recovery& rec = part.files->recovery();
    const std::uint64_t end = part.files->end();
    const std::uint64_t was_durable = atomic(part.spill().durable).load(std::memory_order_acquire);
    if (end > p_tail(part))
      return fail(part, EPROTO,
                  "its segment files end at " + std::to_string(end) + ", past the ring's tail " +
                      std::to_string(p_tail(part)) + " (files of another topic of that name?)");
    if (end < was_durable)
      logf("error", "spill: " + part.what + ": the files end at " + std::to_string(end) + " but " +
                        std::to_string(was_durable) +
                        " was reported durable: the files lost data (" + rec.damage + ")");
    // What a dead daemon wrote may be in the page cache only: synced now,
    // before it is called durable.
    if (Outcome ok = part.files->sync(); !ok)
      return fail(part, ok.error().code, ok.error().message);
    part.next = part.written = part.durable = end;
    part.written_mark = part.durable_mark = part.checkpointed = current_mark(part);
    part.last_sync = part.last_checkpoint = Clock::now();
    if (end > at) atomic(part.cursor.slot->position).store(end, std::memory_order_release);
    part.cursor_floor = std::max(end, at);
    atomic(part.spill().disk_start).store(part.files->start(), std::memory_order_release);
    atomic(part.spill().failed_errno).store(0, std::memory_order_release);
    part.publish_watermarks();
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began).count();
    std::string note = "spill: " + part.what + " -> " + part.dir + ": " +
                       std::to_string(rec.segments) + " segment file(s), positions [" +
                       std::to_string(rec.start) + ", " + std::to_string(rec.end) + "), " +
                       std::to_string(rec.scanned_bytes) + " bytes scanned in " +
                       std::to_string(ms) + " ms" + (rec.clean ? " (clean)" : "");
    if (!rec.damage.empty())
      note += "; damage: " + rec.damage + ", " + std::to_string(rec.truncated_bytes) +
              " bytes cut, " + std::to_string(rec.removed_segments) + " file(s) removed";
    logf(rec.damage.empty() ? "info" : "warning", note);
  }

  static std::uint64_t p_tail(const Partition& p) {
    return p.ring.tail().load(std::memory_order_acquire);
  }
  static log::SegmentLog::Mark current_mark(const Partition& p) {
    // Only meaningful while nothing is in flight: the files' end.
    return {p.files->end(), 0, 0};
  }

  void fail(Partition& p, int err, const std::string& why) {
    if (p.failed != 0) return;
    p.failed = err != 0 ? err : EIO;
    sh_.errors.fetch_add(1, std::memory_order_relaxed);
    atomic(p.spill().failed_errno)
        .store(static_cast<std::uint32_t>(p.failed), std::memory_order_release);
    logf("error",
         "spill: " + p.what + " stopped at durable " + std::to_string(p.durable) + ": " + why +
             (p.ring.policy() == Policy::Block ? "; producers are held back at its cursor"
                                               : "; what producers publish now is not recorded") +
             " (restart shmbusd once the cause is fixed)");
  }

  // --- the pipeline of one partition ---

  bool pump(Partition& p) {
    if (p.failed != 0 || !p.files) return false;
    const auto now = Clock::now();
    maybe_sync(p, now);
    if (p.closing) return false;
    bool worked = false;
    while (p.order.size() < kDepth) {
      // A new file: only with nothing in flight to the one before it.
      if (p.files->room() == 0 && !p.idle_io()) break;
      if (!fill(p, now)) break;
      worked = true;
    }
    return worked;
  }

  WriteSlot* free_slot(Partition& p, int& index) {
    for (std::size_t i = 0; i < kDepth; ++i)
      if (!p.slots[i].busy) {
        index = static_cast<int>(i);
        return &p.slots[i];
      }
    return nullptr;
  }

  // Copies the next settled frames into a free slot and writes them.
  bool fill(Partition& p, Clock::time_point now) {
    const log::Ring& r = p.ring;
    const std::uint64_t tail = r.tail().load(std::memory_order_acquire);
    if (tail <= p.next) return false;
    if (tail > p.next + r.capacity()) return gap(p, r.oldest_intact(tail), tail);
    int index = 0;
    WriteSlot* s = free_slot(p, index);
    if (s == nullptr) return false;
    const std::uint64_t span = p.geometry.span;
    const std::uint64_t limit = std::min(tail, p.next - p.next % span + span);
    constexpr std::size_t kHead = sizeof(log::BatchHeader);
    std::byte* out = s->buf.get() + kHead;
    std::size_t used = 0;
    std::uint64_t at = p.next, run = p.next;  // [run, at): frames to copy from the ring
    auto copy_run = [&] {
      std::uint64_t q = run;
      while (q < at) {
        const std::uint64_t off = q & (r.capacity() - 1);
        const std::uint64_t n = std::min(at - q, r.capacity() - off);
        std::memcpy(out + (q - p.next), reinterpret_cast<const std::byte*>(r.frame_at(q)), n);
        q += n;
      }
      run = at;
    };
    while (at < limit) {
      const detail::FrameLook l = r.look(at);
      if (l.damaged()) {
        // A header torn by a producer lapping us reads as damage: a lap.
        std::atomic_thread_fence(std::memory_order_acquire);
        const std::uint64_t now_tail = r.tail().load(std::memory_order_acquire);
        if (now_tail > p.next + r.capacity()) return gap(p, r.oldest_intact(now_tail), now_tail);
      }
      if (l.damaged())
        return fail(p, EPROTO,
                    "the frame at " + std::to_string(at) +
                        " is damaged (its length leaves its "
                        "segment)"),
               false;
      if (l.settled()) {
        const std::uint64_t n = l.next - at;
        if (used + n > s->capacity - kHead) {
          if (used > 0) break;
          grow(*s, kHead + n);
          out = s->buf.get() + kHead;
        }
        at = l.next;
        used += n;
        p.stuck_at = ~std::uint64_t{0};
        continue;
      }
      // Not settled, with the tail past it: in progress, or abandoned.
      if (used > 0) break;
      if (p.stuck_at != at) {
        p.stuck_at = at;
        p.stuck_since = now;
        break;
      }
      if (now - p.stuck_since < kAbandonWait) break;
      const std::optional<std::uint64_t> q = r.abandoned_until(at);
      p.stuck_since = now;
      if (!q || *q <= at || *q > limit) break;
      // A Pad in the file where the ring has a hole nobody will fill.
      const std::uint64_t n = *q - at;
      if (kHead + n > s->capacity) {
        grow(*s, kHead + n);
        out = s->buf.get() + kHead;
      }
      log::FrameHeader pad{};
      pad.commit = r.commit_word(at);
      pad.length = static_cast<std::uint32_t>(n - sizeof pad);
      pad.type = log::FrameType::Pad;
      std::memset(out, 0, n);
      std::memcpy(out, &pad, sizeof pad);
      at = run = *q;
      used = n;
      logf("warning", "spill: " + p.what + ": the claim at " + std::to_string(at - n) +
                          " was abandoned by a dead producer; recorded as padding to " +
                          std::to_string(at));
      break;
    }
    copy_run();
    if (used == 0) return false;
    // The copy is intact only if no producer lapped its first byte meanwhile.
    std::atomic_thread_fence(std::memory_order_acquire);
    const std::uint64_t after = r.tail().load(std::memory_order_acquire);
    if (after > p.next + r.capacity()) return gap(p, r.oldest_intact(after), after);
    log::SegmentHeader h = p.geometry;
    h.base = p.next - p.next % span;
    const std::optional<log::BatchHeader> b =
        log::frames_batch(h, p.next, {out, static_cast<std::size_t>(used)});
    if (!b)
      return fail(p, EPROTO,
                  "the frames at " + std::to_string(p.next) +
                      " did not check as a batch (a "
                      "damaged ring)"),
             false;
    std::memcpy(s->buf.get(), &*b, kHead);
    if (!submit_batch(p, index, *b, kHead + used)) return false;
    p.next = at;
    atomic(p.spill().committed).store(p.next, std::memory_order_release);
    return true;
  }

  static void grow(WriteSlot& s, std::size_t bytes) {
    s.capacity = (bytes + 4095) & ~std::size_t{4095};
    s.buf = aligned_buffer(s.capacity);
  }

  // Records [next, to) as lost (`overwrite`: producers lapped the spiller).
  bool gap(Partition& p, std::uint64_t to, std::uint64_t tail) {
    int index = 0;
    WriteSlot* s = free_slot(p, index);
    if (s == nullptr) return false;
    const std::uint64_t span = p.geometry.span;
    to = std::min(to, p.next - p.next % span + span);
    const log::BatchHeader b = log::gap_batch(p.next, to);
    std::memcpy(s->buf.get(), &b, sizeof b);
    logf("warning", "spill: " + p.what + ": producers lapped the spiller (tail " +
                        std::to_string(tail) + "): positions [" + std::to_string(p.next) + ", " +
                        std::to_string(to) + ") are lost, recorded as a gap");
    if (!submit_batch(p, index, b, sizeof b)) return false;
    p.next = to;
    atomic(p.spill().committed).store(p.next, std::memory_order_release);
    return true;
  }

  bool submit_batch(Partition& p, int index, const log::BatchHeader& b, std::size_t len) {
    const bool had_file = p.files->file() >= 0;
    const std::uint64_t before = p.files->room() == 0 ? b.position : ~std::uint64_t{0};
    auto placed = p.files->place(b);
    if (!placed) return fail(p, placed.error().code, placed.error().message), false;
    if (had_file && before == b.position) {
      // A new file: the roll synced the one before, all of whose writes
      // had completed (pump rolls only with nothing in flight).
      p.durable = p.written;
      p.durable_mark = p.written_mark;
      atomic(p.spill().durable).store(p.durable, std::memory_order_release);
    }
    WriteSlot& s = p.slots[index];
    s.busy = true;
    s.complete = false;
    s.len = len;
    s.done = 0;
    s.fd = placed->fd;
    s.offset = placed->offset;
    s.end = placed->end;
    p.order.push_back(index);
    submit_write(p, index);
    return true;
  }

  void submit_write(Partition& p, int index) {
    WriteSlot& s = p.slots[index];
    if (!have_uring_) {
      while (s.done < s.len) {
        const ssize_t w = ::pwrite(s.fd, s.buf.get() + s.done, s.len - s.done,
                                   static_cast<off_t>(s.offset + s.done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return write_done(p, index, w < 0 ? -errno : 0);
        s.done += static_cast<std::size_t>(w);
      }
      return write_done(p, index, 0);
    }
    io_uring_sqe* sqe = get_sqe();
    ::io_uring_prep_write(sqe, s.fd, s.buf.get() + s.done, static_cast<unsigned>(s.len - s.done),
                          s.offset + s.done);
    ::io_uring_sqe_set_data(sqe, &p.ops[index]);
    ++in_flight_;
    ++p.ops_in_flight;
  }

  io_uring_sqe* get_sqe() {
    io_uring_sqe* sqe = ::io_uring_get_sqe(&uring_);
    while (sqe == nullptr) {  // the submission queue is full: hand it to the kernel
      ::io_uring_submit(&uring_);
      sqe = ::io_uring_get_sqe(&uring_);
    }
    return sqe;
  }

  // A write's completion: res = bytes written this time, or -errno.
  void write_done(Partition& p, int index, int res) {
    WriteSlot& s = p.slots[index];
    if (have_uring_ && (res == -EINTR || res == -EAGAIN)) return submit_write(p, index);
    if (res < 0 || (res == 0 && s.done < s.len)) {
      s.busy = true;  // never reused: the partition stops here
      return fail(p, res < 0 ? -res : ENOSPC,
                  std::string("cannot write segment file in ") + p.dir + ": " +
                      std::strerror(res < 0 ? -res : ENOSPC));
    }
    if (have_uring_) {
      s.done += static_cast<std::size_t>(res);
      if (s.done < s.len) return submit_write(p, index);  // a short write: the rest
    }
    s.complete = true;
    sh_.bytes.fetch_add(s.len, std::memory_order_relaxed);
    bool moved = false;
    while (!p.order.empty() && p.slots[p.order.front()].complete) {
      WriteSlot& f = p.slots[p.order.front()];
      p.written = f.end.position;
      p.written_mark = f.end;
      f.busy = f.complete = false;
      p.order.pop_front();
      moved = true;
    }
    if (!moved) return;
    atomic(p.spill().written).store(p.written, std::memory_order_release);
    if (p.fsync == Fsync::Never) {
      p.durable = p.written;
      p.durable_mark = p.written_mark;
      atomic(p.spill().durable).store(p.durable, std::memory_order_release);
    }
    // The cursor follows what is in the files: only now may `block`
    // producers reuse those bytes.
    atomic(p.cursor.slot->position)
        .store(std::max(p.written, p.cursor_floor), std::memory_order_release);
  }

  void maybe_sync(Partition& p, Clock::time_point now) {
    if (p.sync_in_flight || p.failed != 0 || p.written == p.durable) return;
    if (p.fsync == Fsync::Never) return;
    if (p.fsync == Fsync::Interval && now - p.last_sync < p.interval && !p.closing) return;
    // Every write below `written` was seen complete: this fdatasync covers them.
    p.sync_in_flight = true;
    p.sync_for = p.written;
    p.sync_mark = p.written_mark;
    p.last_sync = now;
    if (!have_uring_) return sync_done(p, ::fdatasync(p.files->file()) == 0 ? 0 : -errno);
    io_uring_sqe* sqe = get_sqe();
    ::io_uring_prep_fsync(sqe, p.files->file(), IORING_FSYNC_DATASYNC);
    ::io_uring_sqe_set_data(sqe, &p.sync_op);
    ++in_flight_;
    ++p.ops_in_flight;
  }

  // Retention (TopicOptions::retention_bytes, retention_ms): whole files,
  // oldest first (SegmentLog::remove_old). A failure to remove is logged,
  // never fatal: nothing is lost by keeping a file.
  void retain(Partition& p) {
    if (p.failed != 0 || !p.files || (p.retention.bytes == 0 && p.retention.ms == 0)) return;
    const auto now = Clock::now();
    if (now - p.last_retention < kRetentionPeriod) return;
    p.last_retention = now;
    const std::int64_t older_than =
        p.retention.ms == 0
            ? 0
            : shm::realtime_ns() - static_cast<std::int64_t>(
                                       std::min<std::uint64_t>(p.retention.ms, kMaxRetentionMs)) *
                                       1'000'000;
    auto removed = p.files->remove_old(p.retention.bytes, older_than);
    // start() moved over what went, also when a later removal failed.
    atomic(p.spill().disk_start).store(p.files->start(), std::memory_order_release);
    if (!removed)
      return logf("warning", "spill: " + p.what + ": retention: " + removed.error().message);
    if (removed->files == 0) return;
    logf("info", "spill: " + p.what + ": retention removed " + std::to_string(removed->files) +
                     " segment file(s), " + std::to_string(removed->bytes) +
                     " bytes; on disk from " + std::to_string(p.files->start()));
  }

  void sync_done(Partition& p, int res) {
    p.sync_in_flight = false;
    if (res < 0)
      return fail(p, -res,
                  std::string("fdatasync of a segment file in ") + p.dir + " failed: " +
                      std::strerror(-res) + " (never retried: the kernel reports it once)");
    p.durable = p.sync_for;
    p.durable_mark = p.sync_mark;
    atomic(p.spill().durable).store(p.durable, std::memory_order_release);
    const auto now = Clock::now();
    if (now - p.last_checkpoint >= kCheckpointPeriod && p.durable_mark.offset != 0) {
      p.last_checkpoint = now;
      if (Outcome ok = p.files->checkpoint_at(p.durable_mark); !ok)
        logf("warning", "spill: " + p.what + ": " + ok.error().message +
                            " (recovery will scan more after a crash)");
    }
  }

  void reap(std::chrono::microseconds wait) {
    io_uring_cqe* cqe = nullptr;
    if (wait.count() > 0) {
      __kernel_timespec ts{0, wait.count() * 1000};
      if (::io_uring_wait_cqe_timeout(&uring_, &cqe, &ts) != 0) return;
    }
    while (::io_uring_peek_cqe(&uring_, &cqe) == 0) {
      auto* op = static_cast<Op*>(::io_uring_cqe_get_data(cqe));
      const int res = cqe->res;
      ::io_uring_cqe_seen(&uring_, cqe);
      --in_flight_;
      --op->part->ops_in_flight;
      if (op->slot == kSyncOp)
        sync_done(*op->part, res);
      else
        write_done(*op->part, op->slot, res);
    }
  }

  // Partitions asked to close: once nothing is in flight, synced, cleanly
  // closed (a clean checkpoint) and the cursor parked.
  void finish_closing() {
    std::vector<std::pair<std::string, std::uint32_t>> reopen;  // after the loop: open() appends
    for (auto it = parts_.begin(); it != parts_.end();) {
      Partition& p = **it;
      if (!p.closing || !p.quiet()) {
        ++it;
        continue;
      }
      if (p.files && p.failed == 0 && p.idle_io()) {
        if (Outcome ok = p.files->close(); !ok) {
          fail(p, ok.error().code, ok.error().message);
        } else {
          p.durable = p.written;
          atomic(p.spill().durable).store(p.durable, std::memory_order_release);
        }
      }
      if (p.cursor.slot != nullptr && !p.remove_files) log::park(*p.cursor.slot, p.cursor.control);
      const std::string topic = p.topic;
      const bool remove = p.remove_files;
      it = parts_.erase(it);
      if (remove && std::none_of(parts_.begin(), parts_.end(),
                                 [&](const auto& q) { return q->topic == topic; })) {
        remove_topic_files(topic);
        pending_removal_.erase(topic);
        for (auto r = reopen_.begin(); r != reopen_.end();) {
          if (r->first == topic && wanted_.count(*r) != 0) reopen.push_back(*r);
          r = r->first == topic ? reopen_.erase(r) : std::next(r);
        }
      }
    }
    for (const auto& [topic, index] : reopen) open(topic, index);
  }

  SpillService::Shared& sh_;
  io_uring uring_{};
  bool have_uring_ = false;
  std::size_t in_flight_ = 0;
  std::vector<std::unique_ptr<Partition>> parts_;
  std::set<std::pair<std::string, std::uint32_t>> wanted_, reopen_;
  std::set<std::string> pending_removal_;
};

}  // namespace

SpillService::SpillService(std::string bus_dir, std::string data_dir, std::uint64_t span_bytes)
    : shared_(std::make_unique<Shared>()) {
  shared_->bus_dir = std::move(bus_dir);
  shared_->data_dir = std::move(data_dir);
  shared_->span_bytes = span_bytes;
}

SpillService::~SpillService() {
  {
    std::lock_guard lock(shared_->m);
    shared_->stop = true;
  }
  shared_->cv.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SpillService::start() {
  thread_ = std::thread([s = shared_.get()] { Spiller(*s).run(); });
}

void SpillService::served(const Topics& topics) {
  std::vector<Wanted> wanted;
  for (const auto& [name, t] : topics)
    if (t->options.durable)
      for (std::uint32_t p = 0; p < t->options.partitions; ++p) wanted.push_back({name, p});
  {
    std::lock_guard lock(shared_->m);
    shared_->wanted = std::move(wanted);
  }
  shared_->cv.notify_all();
}

void SpillService::deleted(const std::string& topic) {
  {
    std::lock_guard lock(shared_->m);
    shared_->deleted.push_back(topic);
  }
  shared_->cv.notify_all();
}

void SpillService::add_stats(control::DaemonStats& stats) const {
  stats.spilled_bytes += shared_->bytes.load(std::memory_order_relaxed);
  stats.spill_errors += shared_->errors.load(std::memory_order_relaxed);
}

}  // namespace shmbus::daemon
