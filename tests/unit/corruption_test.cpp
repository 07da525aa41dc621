// Never trust shared memory. A consumer maps the ring read-only, but any
// process that may write the bus directory can write anything into it. These
// tests fill a partition with valid messages, damage the ring data region at
// random and in targeted ways, and poll it from every kind of start: poll must
// return Ok, Empty, Lagged or Corrupt, never crash, hang or hand out bytes
// outside the frame's segment.
//
// The damage is drawn from a seeded PRNG; the seed is printed, and
// SHMBUS_FUZZ_SEED=<n> replays a run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "log/layout.hpp"
#include "log/ring.hpp"
#include "shm/file.hpp"
#include "test_bus.hpp"

namespace shmbus {
namespace {

using log::atomic;
using log::FrameHeader;
using log::FrameType;
using testing::bytes;
using testing::text;

constexpr std::uint64_t kSeg = 4096;
constexpr std::uint32_t kSegs = 4;
constexpr std::uint64_t kCap = kSeg * kSegs;
// Two policies: 200,000 mutations in all.
constexpr std::uint64_t kMutationsPerPolicy = 100'000;

std::uint64_t fuzz_seed() {
  const char* s = std::getenv("SHMBUS_FUZZ_SEED");
  if (s != nullptr && *s != '\0') return std::strtoull(s, nullptr, 0);
  return 20240611;
}

// Where this process maps a partition's log file (every Producer, Consumer
// and Ring maps it on its own), and whether a span handed to a poll handler
// lies inside the segment of the frame it came from.
class Bounds {
 public:
  Bounds(std::string path, std::uint64_t data_offset)
      : path_(std::move(path)), data_offset_(data_offset) {
    reload();
  }

  // Call after opening a consumer: it adds a mapping.
  void reload() {
    ranges_.clear();
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
      if (line.size() <= path_.size() ||
          line.compare(line.size() - path_.size(), path_.size(), path_) != 0 ||
          line[line.size() - path_.size() - 1] != ' ')
        continue;
      unsigned long lo = 0, hi = 0, off = 0;
      char perms[8];
      if (std::sscanf(line.c_str(), "%lx-%lx %7s %lx", &lo, &hi, perms, &off) != 4) continue;
      ranges_.push_back({lo, hi, lo - off});
    }
    EXPECT_FALSE(ranges_.empty()) << path_ << " is not mapped";
  }

  // True when [p, p + n) lies inside the body area of the segment of the
  // frame at `position` in some mapping of the log, or outside every
  // mapping of it (a consumer's private copy, which ASan bounds-checks).
  bool inside(const void* p, std::size_t n, std::uint64_t position) {
    if (n == 0) return true;
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t b = a + n;
    for (const Range& r : ranges_) {
      if (b <= r.lo || a >= r.hi) continue;
      ++in_place;
      const std::uintptr_t data = r.base + data_offset_;
      const std::uint64_t off = position & (kCap - 1);
      const std::uintptr_t lo = data + off + sizeof(FrameHeader);
      const std::uintptr_t hi = data + (off & ~(kSeg - 1)) + kSeg;
      return a >= lo && b <= hi;
    }
    ++copied;
    return n <= kSeg;
  }

  std::uint64_t in_place = 0;  // spans checked in a mapping of the log
  std::uint64_t copied = 0;    // spans checked in private copies

 private:
  struct Range {
    std::uintptr_t lo, hi, base;
  };
  std::string path_;
  std::uint64_t data_offset_;
  std::vector<Range> ranges_;
};

// Frame damage that a consumer must report as Corrupt.
enum class Target {
  HugeLength,            // length past the segment (Data or Pad)
  UnknownType,           // neither Data nor Pad
  UnknownFlags,          // a must-understand flag bit past kKnownMustUnderstandFlags
  KeyPastFrame,          // key length past the body
  PropsLengthPastFrame,  // properties length past the body
  PropsTooShort,         // properties length < 2 (no room for the count)
  PropsCountPastFrame,   // more entries than the properties bytes can hold
  PropEntryPastFrame,    // an entry's name + value past the properties bytes
  PropBadType,           // a property type no reader knows
  PropBadSize,           // an Int64, Double or Bool of the wrong size, or a Bool not 0 or 1
  kCount,
};

const char* to_string(Target t) {
  static const char* const names[] = {
      "huge length",
      "unknown type",
      "unknown flags",
      "key past frame",
      "props length past frame",
      "props too short",
      "props count past",
      "prop entry past",
      "prop bad type",
      "prop bad size",
  };
  return names[static_cast<int>(t)];
}

class CorruptionTest : public testing::TestBus {
 protected:
  std::optional<Consumer> open_consumer(const ConsumerOptions& o = {}) {
    auto c = Consumer::open(bus, "t", o);
    if (!c) {
      ADD_FAILURE() << c.error().message;
      return std::nullopt;
    }
    return std::move(c).value();
  }

  void fuzz(Policy policy);
  void seek_past_corrupt_frame(Policy policy);
};

// ---------------------------------------------------------------------------
// The fuzzer: one partition, one producer, four long-lived consumers and a
// few short-lived ones, rounds of fill / damage / read.

class Fuzzer {
 public:
  Fuzzer(log::Ring& ring, Bounds& bounds, std::uint64_t seed)
      : ring_(ring), bounds_(bounds), rng_(seed), align_(ring.alignment()) {}

  std::uint64_t rnd(std::uint64_t n) { return rng_() % n; }
  // The poll handler: on_message for every message.
  auto handler() {
    return [this](const Message& m) { on_message(m); };
  }
  std::uint64_t tail() const { return ring_.tail().load(std::memory_order_acquire); }

  // --- filling ---

  // Publishes random messages (keys, properties) from the tail until it is
  // within two segments of `limit`. Returns their positions.
  std::vector<std::uint64_t> fill(Producer& p, std::uint64_t limit) {
    std::vector<std::uint64_t> positions;
    std::vector<std::string> strings;
    std::vector<Property> props;
    while (tail() + 2 * kSeg <= limit) {
      strings.clear();
      props.clear();
      auto random_string = [&](std::size_t max) {
        std::string s(rnd(max + 1), '\0');
        for (char& c : s) c = static_cast<char>(rng_());
        return s;
      };
      const std::string key = rnd(2) == 0 ? random_string(24) : std::string();
      if (rnd(2) == 0) {
        const std::uint64_t n = 1 + rnd(4);
        strings.reserve(2 * n);
        for (std::uint64_t i = 0; i < n; ++i) {
          strings.push_back(random_string(10));
          strings.push_back(random_string(20));
          props.push_back({strings[2 * i], strings[2 * i + 1]});
        }
      }
      const std::size_t size = rnd(401);
      Claim c;
      const Status st = p.claim(size, key, props, c);
      if (st == Status::Full) break;
      EXPECT_EQ(st, Status::Ok) << to_string(st);
      if (st != Status::Ok) break;
      for (std::byte& b : c.payload) b = static_cast<std::byte>(rng_());
      positions.push_back(c.position);
      EXPECT_EQ(p.commit(c), Status::Ok);
    }
    return positions;
  }

  // --- damage ---

  std::byte* data() const { return reinterpret_cast<std::byte*>(ring_.frame_at(0)); }

  void random_bytes() {
    const std::uint64_t n = 1 + rnd(16);
    const std::uint64_t at = rnd(kCap - n + 1);
    for (std::uint64_t i = 0; i < n; ++i) data()[at + i] = static_cast<std::byte>(rng_());
  }

  void bit_flip() { data()[rnd(kCap)] ^= static_cast<std::byte>(1u << rnd(8)); }

  // A valid commit word (for this lap, the one before or the one after) over
  // a random header: odd and huge lengths, any type, any flags.
  void random_frame() {
    const std::uint64_t lap = tail() & ~(kCap - 1);
    std::uint64_t p = lap + rnd(kCap / align_) * align_;
    if (rnd(3) == 0) p += kCap;
    if (rnd(3) == 0 && p >= kCap) p -= kCap;
    FrameHeader* f = ring_.frame_at(p);
    const std::uint64_t room = ring_.segment_left(p) - sizeof(FrameHeader);
    switch (rnd(3)) {
      case 0:
        f->length = static_cast<std::uint32_t>(rng_());
        break;
      case 1:
        f->length = static_cast<std::uint32_t>(rnd(room + 1) | 1);
        break;
      default:
        f->length = static_cast<std::uint32_t>(rnd(room + 1));
    }
    const std::uint16_t types[] = {1, 2, static_cast<std::uint16_t>(rng_())};
    f->type = static_cast<FrameType>(types[rnd(3)]);
    f->flags = static_cast<std::uint16_t>(rnd(2) == 0 ? rnd(4) : rng_());
    atomic(f->commit).store(ring_.commit_word(p), std::memory_order_release);
  }

  // Damage that must read as Corrupt at q (a frame position of this round).
  Target target(std::uint64_t q) {
    auto t = static_cast<Target>(rnd(static_cast<std::uint64_t>(Target::kCount)));
    FrameHeader* f = ring_.frame_at(q);
    auto* body = reinterpret_cast<std::byte*>(f + 1);
    const std::uint64_t room = ring_.segment_left(q) - sizeof(FrameHeader);
    if (room < 26 && (t == Target::PropsCountPastFrame || t == Target::PropEntryPastFrame ||
                      t == Target::PropBadType || t == Target::PropBadSize))
      t = Target::UnknownType;
    auto put16 = [&](std::uint64_t at, std::uint64_t v) {
      const auto x = static_cast<std::uint16_t>(v);
      std::memcpy(body + at, &x, 2);
    };
    auto put32 = [&](std::uint64_t at, std::uint64_t v) {
      const auto x = static_cast<std::uint32_t>(v);
      std::memcpy(body + at, &x, 4);
    };
    std::uint64_t length = rnd(room + 1);
    std::uint16_t type = static_cast<std::uint16_t>(FrameType::Data);
    std::uint16_t flags = 0;
    switch (t) {
      case Target::HugeLength:
        length = room + 1 + rnd(0xffffffffull - room);
        type = static_cast<std::uint16_t>(rnd(2) == 0 ? FrameType::Data : FrameType::Pad);
        flags = static_cast<std::uint16_t>(rnd(4));
        break;
      case Target::UnknownType:
        do {
          type = static_cast<std::uint16_t>(rng_());
        } while (type == 1 || type == 2 || type >= log::kFirstControlType);
        flags = static_cast<std::uint16_t>(rnd(4));
        break;
      case Target::UnknownFlags:
        flags = static_cast<std::uint16_t>(rnd(4) | (4u << rnd(6)));  // must-understand bits
        break;
      case Target::KeyPastFrame:
        flags = static_cast<std::uint16_t>(log::kHasKey | (rnd(2) == 0 ? log::kHasProperties : 0));
        if (length >= 2) put16(0, (length - 1) + rnd(0x10000 - (length - 1)));
        break;
      case Target::PropsLengthPastFrame:
        flags = log::kHasProperties;
        if (length >= 4) put32(0, (length - 3) + rnd(1u << 20));
        break;
      case Target::PropsTooShort:
        flags = log::kHasProperties;
        if (length >= 4) put32(0, rnd(2));
        break;
      case Target::PropsCountPastFrame: {
        flags = log::kHasProperties;
        length = 6 + rnd(room - 5);
        const std::uint64_t n = length - 4;
        put32(0, n);
        const std::uint64_t fits = (n - 2) / 4;  // entries of 4 bytes at most
        put16(4, fits + 1 + rnd(0x10000 - (fits + 1)));
        break;
      }
      case Target::PropEntryPastFrame: {
        flags = log::kHasProperties;
        length = 10 + rnd(room - 9);
        const std::uint64_t n = length - 4;
        put32(0, n);
        put16(4, 1 + rnd(4));
        const std::uint64_t total = (n - 6) + 1 + rnd(64);  // name + value of the first entry
        const std::uint64_t name = std::min<std::uint64_t>(total, 255);
        body[6] = std::byte{static_cast<std::uint8_t>(PropertyType::String)};
        body[7] = std::byte{static_cast<std::uint8_t>(name)};
        put16(8, total - name);  // < 0xffff: segments are 4 KiB
        break;
      }
      case Target::PropBadType:
      case Target::PropBadSize: {
        // One entry that fits exactly: a type no reader knows, or a
        // fixed-size type (Int64, Double, Bool) with a value of another
        // size, or a Bool that is neither 0 nor 1.
        flags = log::kHasProperties;
        std::uint8_t type_byte;
        std::uint64_t value;
        bool bad_bool = false;
        if (t == Target::PropBadType) {
          do {
            type_byte = static_cast<std::uint8_t>(rng_());
          } while (type_byte >= 1 && type_byte <= 5);
          value = rnd(9);
        } else {
          type_byte = static_cast<std::uint8_t>(2 + rnd(3));  // Int64, Double, Bool
          const std::uint64_t right = type_byte == 4 ? 1 : 8;
          bad_bool = type_byte == 4 && rnd(2) == 0;
          value = right;
          while (!bad_bool && value == right) value = rnd(17);
        }
        length = 4 + 2 + kPropertyEntryHeaderBytes + value;
        put32(0, length - 4);
        put16(4, 1);
        body[6] = std::byte{type_byte};
        body[7] = std::byte{0};  // no name
        put16(8, value);
        for (std::uint64_t k = 0; k < value; ++k) body[10 + k] = std::byte(rng_());
        if (bad_bool) body[10] = std::byte{static_cast<std::uint8_t>(2 + rnd(254))};
        break;
      }
      case Target::kCount:
        break;
    }
    f->length = static_cast<std::uint32_t>(length);
    f->type = static_cast<FrameType>(type);
    f->flags = flags;
    f->timestamp = static_cast<std::int64_t>(rng_() >> 1);
    atomic(f->commit).store(ring_.commit_word(q), std::memory_order_release);
    return t;
  }

  // Moves the tail far ahead (then a copying consumer must report Lagged) or
  // back; always to a multiple of the alignment.
  void move_tail(Consumer& k, const std::vector<std::uint64_t>& positions) {
    const std::uint64_t t = tail();
    if (rnd(2) == 0 || t < 4 * kCap) {
      const std::uint64_t q = positions.empty() ? 0 : positions[rnd(positions.size())];
      // Unless the tail moved this round already, the checker can go to q;
      // q older than the tail makes it copy (on block, too), and so notice.
      const bool at_q = !positions.empty() && q < t && k.seek(q);
      const std::uint64_t moved = t + (2 + rnd(4)) * kCap + rnd(kCap / align_) * align_;
      ring_.tail().store(moved, std::memory_order_release);
      if (!at_q) return;
      ++lag_checks;
      const PollResult r = k.poll(handler(), static_cast<std::uint32_t>(1 + rnd(8)));
      const LostRange lost = k.lost();
      if (r.status != Status::Lagged || r.count != 0 || lost.from != q ||
          lost.to != ring_.oldest_intact(moved) || k.position() != lost.to)
        fail() << "tail moved from " << t << " to " << moved << ": poll at " << q << " gave "
               << to_string(r.status) << " count " << r.count << " lost [" << lost.from << ", "
               << lost.to << ") position " << k.position();
    } else {
      ring_.tail().store(t - (1 + rnd(3 * kCap / align_)) * align_, std::memory_order_release);
    }
  }

  // --- reading ---

  // Every delivered message: aligned position, spans inside the frame's
  // segment (or in a private copy), every byte touched (ASan).

  void on_message(const Message& m) {
    ++delivered;
    if (m.position % align_ != 0) fail() << "unaligned message position " << m.position;
    std::uint64_t sum = 0;
    if (!bounds_.inside(m.payload.data(), m.payload.size(), m.position))
      fail() << "payload of " << m.payload.size() << " bytes outside the segment of " << m.position;
    for (std::byte b : m.payload) sum += static_cast<std::uint8_t>(b);
    if (!bounds_.inside(m.key.data(), m.key.size(), m.position))
      fail() << "key of " << m.key.size() << " bytes outside the segment of " << m.position;
    for (char c : m.key) sum += static_cast<std::uint8_t>(c);
    std::uint32_t n = 0;
    for (Property pr : m.properties) {
      if (++n > m.properties.size()) {
        fail() << "property walk overran at " << m.position;
        break;
      }
      const std::string_view value = pr.value.string().value_or("");
      if (!bounds_.inside(pr.name.data(), pr.name.size(), m.position) ||
          !bounds_.inside(value.data(), value.size(), m.position))
        fail() << "property outside the segment of " << m.position;
      for (char c : pr.name) sum += static_cast<std::uint8_t>(c);
      for (char c : value) sum += static_cast<std::uint8_t>(c);
    }
    sink_ += sum;
  }

  // Polls with random batch sizes until Empty; after Corrupt, seeks to the
  // next segment start. Bounded: a ring's worth of frames, a few times over.
  void read_all(Consumer& c, const char* who) {
    const std::uint64_t max_polls = 4 * kCap / align_ + 64;
    bool resumed = false;
    for (std::uint64_t i = 0; i < max_polls; ++i) {
      const std::uint64_t before = c.position();
      const auto max = static_cast<std::uint32_t>(1 + rnd(64));
      const PollResult r = c.poll(handler(), max);
      if (r.count > max) fail() << who << ": " << r.count << " messages for a batch of " << max;
      if (resumed && r.count > 0) ++resumed_after_corrupt;
      resumed = false;
      switch (r.status) {
        case Status::Ok:
          if (r.count == 0) fail() << who << ": Ok without a message";
          continue;
        case Status::Empty:
          if (r.count != 0) fail() << who << ": Empty with messages";
          return;
        case Status::Lagged: {
          ++lagged;
          const LostRange lost = c.lost();
          if (lost.from < before || lost.to <= lost.from || c.position() != lost.to ||
              lost.to % kSeg != 0)
            fail() << who << ": Lagged from " << before << " with lost [" << lost.from << ", "
                   << lost.to << ") position " << c.position();
          continue;
        }
        case Status::Corrupt: {
          ++corrupt;
          const std::uint64_t at = c.position();
          if (at < before || at % align_ != 0)
            fail() << who << ": Corrupt at " << at << " after polling from " << before;
          if (!c.seek((at & ~(kSeg - 1)) + kSeg)) return;  // past the tail: done
          resumed = true;
          continue;
        }
        default:
          fail() << who << ": poll returned " << to_string(r.status);
          return;
      }
    }
    fail() << who << ": no end after " << max_polls << " polls, at " << c.position() << ", tail "
           << tail();
  }

  // Checks that the damage target() did at q reads as Corrupt for consumer
  // `k`, which is at q or reaches q through PADs only.
  void check_target(Consumer& k, std::uint64_t q, Target t) {
    ++target_checks;
    const PollResult r = k.poll(handler(), static_cast<std::uint32_t>(1 + rnd(8)));
    if (r.status != Status::Corrupt || r.count != 0 || k.position() != q)
      fail() << to_string(t) << " at " << q << ": poll gave " << to_string(r.status) << " count "
             << r.count << " position " << k.position();
  }

  // ADD_FAILURE with what is streamed into it, but only the first few times.
  class Failure {
   public:
    explicit Failure(bool report) : report_(report) {}
    Failure(const Failure&) = delete;
    Failure& operator=(const Failure&) = delete;
    ~Failure() {
      if (report_) ADD_FAILURE() << out_.str();
    }
    template <class T>
    Failure& operator<<(const T& v) {
      if (report_) out_ << v;
      return *this;
    }

   private:
    bool report_;
    std::ostringstream out_;
  };
  Failure fail() { return Failure(++failures <= 20); }

  std::uint64_t delivered = 0, corrupt = 0, lagged = 0, resumed_after_corrupt = 0;
  std::uint64_t target_checks = 0, lag_checks = 0, failures = 0;

 private:
  log::Ring& ring_;
  Bounds& bounds_;
  std::mt19937_64 rng_;
  std::uint64_t align_;
  std::uint64_t sink_ = 0;
};

// ---------------------------------------------------------------------------

void CorruptionTest::fuzz(Policy policy) {
  const std::uint64_t seed = fuzz_seed();
  std::printf("[   seed   ] SHMBUS_FUZZ_SEED=%" PRIu64 "\n", seed);
  SCOPED_TRACE("replay with SHMBUS_FUZZ_SEED=" + std::to_string(seed));
  TopicOptions o;
  o.segment_bytes = kSeg;
  o.segment_count = kSegs;
  o.policy = policy;
  o.frame_alignment = policy == Policy::Block ? 64 : 32;
  o.max_producers = 2;
  o.max_consumers = 8;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  // Overwrite runs at large positions; block starts at 0 (oldest_intact(t <= capacity) == 0).
  if (policy == Policy::Overwrite) ring->tail().store(std::uint64_t{1} << 40);
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(p) << p.error().message;
  // a: reads in place on block (frames newer than its seek); z: the same, and
  // checks targeted damage on the round's first frame; b: seeks back to
  // segment starts (copying); k: checks targeted damage anywhere (copying).
  auto a = open_consumer(), z = open_consumer(), b = open_consumer(), k = open_consumer();
  ASSERT_TRUE(a && z && b && k);
  Bounds bounds(log::ring_path(shm::bus_directory(bus), "t", 0),
                ring->ring_header()->config.data_offset);
  Fuzzer f(*ring, bounds, seed * 2 + (policy == Policy::Block ? 0 : 1));

  std::uint64_t mutations = 0, rounds = 0;
  while (mutations < kMutationsPerPolicy && f.failures == 0) {
    ++rounds;
    // Fill: everybody at the tail first, so that a block producer has a whole ring.
    const std::uint64_t t0 = f.tail();
    for (Consumer* c : {&*a, &*z, &*b, &*k}) ASSERT_TRUE(c->seek(t0)) << "seek to the tail " << t0;
    const std::vector<std::uint64_t> positions = f.fill(*p, t0 + kCap);
    ASSERT_FALSE(positions.empty());

    if (f.rnd(2) == 0) {
      const Target t = f.target(positions[0]);
      ++mutations;
      f.check_target(*z, positions[0], t);
    }
    const std::uint64_t n = 1 + f.rnd(16);
    for (std::uint64_t i = 0; i < n; ++i, ++mutations) {
      const std::uint64_t kind = f.rnd(100);
      if (kind < 45) {
        f.random_bytes();
      } else if (kind < 55) {
        f.bit_flip();
      } else if (kind < 65) {
        f.random_frame();
      } else if (kind < 95) {
        const std::uint64_t q = positions[f.rnd(positions.size())];
        const Target t = f.target(q);
        if (k->seek(q)) f.check_target(*k, q, t);  // unless the tail moved past q
      } else {
        f.move_tail(*k, positions);
      }
    }

    f.read_all(*a, "a (in place)");
    f.read_all(*z, "z (in place)");
    const std::uint64_t t = f.tail();
    const std::uint64_t oldest = ring->oldest_intact(t);
    auto segment_start = [&] { return oldest + f.rnd((t - oldest) / kSeg + 1) * kSeg; };
    const std::uint64_t from = segment_start();
    ASSERT_TRUE(b->seek(from)) << "seek to " << from << " with tail " << t;
    f.read_all(*b, "b (seeking)");
    f.read_all(*k, "k (checker)");

    if (rounds % 16 == 0) {  // consumers that start at Earliest, at a position, at Latest
      ConsumerOptions early, at, latest;
      early.start = ConsumerOptions::Start::Earliest;
      at.start = ConsumerOptions::Start::Position;
      at.position = segment_start();
      for (const ConsumerOptions* opts : {&early, &at, &latest}) {
        auto c = open_consumer(*opts);
        ASSERT_TRUE(c);
        bounds.reload();
        f.read_all(*c, "fresh consumer");
      }
    }
  }

  std::printf("[  stats   ] %" PRIu64 " mutations in %" PRIu64 " rounds: %" PRIu64
              " messages, %" PRIu64 " corrupt, %" PRIu64 " lagged, %" PRIu64
              " resumed after corrupt; %" PRIu64 " targeted checks, %" PRIu64
              " lag checks; spans %" PRIu64 " in place, %" PRIu64 " copied\n",
              mutations, rounds, f.delivered, f.corrupt, f.lagged, f.resumed_after_corrupt,
              f.target_checks, f.lag_checks, bounds.in_place, bounds.copied);
  EXPECT_EQ(f.failures, 0u);
  EXPECT_GE(mutations, kMutationsPerPolicy);
  EXPECT_GT(f.target_checks, kMutationsPerPolicy / 10);
  EXPECT_GT(f.lag_checks, kMutationsPerPolicy / 200);
  EXPECT_GT(f.resumed_after_corrupt, 100u);
  EXPECT_GT(f.delivered, 10 * rounds);
  if (policy == Policy::Block) {
    EXPECT_GT(bounds.in_place, 0u) << "the in-place path ran";
  }
  EXPECT_GT(bounds.copied, 0u) << "the copying path ran";
}

TEST_F(CorruptionTest, FuzzBlock) {
  fuzz(Policy::Block);
}
TEST_F(CorruptionTest, FuzzOverwrite) {
  fuzz(Policy::Overwrite);
}

// ---------------------------------------------------------------------------
// After Corrupt the cursor stays; seek() to the next segment start reads on,
// and the frames there are intact.

void CorruptionTest::seek_past_corrupt_frame(Policy policy) {
  TopicOptions o;
  o.segment_bytes = kSeg;
  o.segment_count = kSegs;
  o.policy = policy;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  auto in_place = open_consumer();  // joins at 0: reads in place on block
  auto p = Producer::open(bus, "t");
  ASSERT_TRUE(in_place && p);
  auto payload = [](int i) {
    std::string s = "message " + std::to_string(i);
    s.resize(100, '.');  // 128-byte frames: 32 per segment
    return s;
  };
  constexpr int kMessages = 3 * kSeg / 128;
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(p->offer(bytes(payload(i)), "k"), Status::Ok);
  ASSERT_EQ(ring->tail().load(), 3 * kSeg);
  const std::uint64_t bad = 5 * 128;
  FrameHeader* f = ring->frame_at(bad);
  f->type = static_cast<FrameType>(7);
  ConsumerOptions early;
  early.start = ConsumerOptions::Start::Earliest;
  auto copying = open_consumer(early);  // 0 is older than its join: reads by copy
  ASSERT_TRUE(copying);

  for (Consumer* c : {&*in_place, &*copying}) {
    std::vector<std::string> got;
    auto collect = [&](const Message& m) {
      EXPECT_EQ(m.key, "k");
      got.emplace_back(text(m.payload));
    };
    PollResult r = c->poll(collect, 1000);
    EXPECT_EQ(r.status, Status::Corrupt) << to_string(r.status);
    EXPECT_EQ(r.count, 5u);
    EXPECT_EQ(c->position(), bad) << "the cursor stays at the bad frame";
    r = c->poll(collect, 1000);
    EXPECT_EQ(r.status, Status::Corrupt) << "and stays";
    EXPECT_EQ(r.count, 0u);
    ASSERT_TRUE(c->seek(kSeg));
    r = c->poll(collect, 1000);
    EXPECT_EQ(r.status, Status::Ok) << to_string(r.status);
    EXPECT_EQ(r.count, static_cast<std::uint32_t>(kMessages - 32));
    ASSERT_EQ(got.size(), static_cast<std::size_t>(kMessages - 27));
    for (int i = 0; i < 5; ++i) EXPECT_EQ(got[i], payload(i));
    for (int i = 32; i < kMessages; ++i) EXPECT_EQ(got[i - 27], payload(i));
    EXPECT_EQ(c->poll(collect, 1000).status, Status::Empty);
  }
}

TEST_F(CorruptionTest, SeekPastCorruptFrameBlock) {
  seek_past_corrupt_frame(Policy::Block);
}
TEST_F(CorruptionTest, SeekPastCorruptFrameOverwrite) {
  seek_past_corrupt_frame(Policy::Overwrite);
}

// A tail that is not a multiple of the frame alignment can only come from
// damage. A consumer must not start there: its header would straddle the
// segment end (and, at the end of the ring, the end of the mapping).
TEST_F(CorruptionTest, UnalignedTailIsNotTrusted) {
  TopicOptions o;
  o.segment_bytes = kSeg;
  o.segment_count = kSegs;
  ASSERT_TRUE(Topic::create(bus, "t", o));
  auto ring = open_ring();
  ASSERT_TRUE(ring);
  const std::uint64_t p = kSeg - 8;
  ring->tail().store(p);
  // A header at p with the commit word of p: its body would start in the next segment.
  const FrameHeader h{ring->commit_word(p), 100, FrameType::Data, 0, 0};
  std::memcpy(reinterpret_cast<std::byte*>(ring->frame_at(0)) + p, &h, sizeof h);
  auto c = Consumer::open(bus, "t");
  if (!c) return;  // refusing a damaged partition is fine
  Bounds bounds(log::ring_path(shm::bus_directory(bus), "t", 0),
                ring->ring_header()->config.data_offset);
  const PollResult r = c->poll(
      [&](const Message& m) {
        EXPECT_TRUE(bounds.inside(m.payload.data(), m.payload.size(), m.position))
            << "payload outside the segment of " << m.position;
      },
      8);
  EXPECT_NE(r.status, Status::Ok) << "delivered a frame at the unaligned position " << p;
}

}  // namespace
}  // namespace shmbus
