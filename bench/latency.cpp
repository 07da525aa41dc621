// shmbus-latency — round-trip latency and one-way throughput of shmbus between
// real, separately pinned processes, measured in the same run as the bare
// shared-memory mechanisms it is built from:
//
//   bare cache-line ping-pong   one 64-byte line per direction, a counter stored and awaited
//   bare SPSC ring              slots of {sequence word, payload} in 64-byte lines, per direction
//   shmbus                      Topic "ping" and "pong" (block, frame_alignment 64, exclusive)
//
// Round trips: one pair of forked processes (A pings and measures, B echoes)
// runs every mechanism, the mechanisms taking turns in blocks of round trips,
// so that the host's drift (large on this VM) lands on all of them alike.
// Samples go into a log-linear histogram (64 sub-buckets per power of two:
// < 1.6% bucket width, < 0.8% error at the reported bucket middle).
// Throughput: fresh processes per row and round (a third one for the second
// producer of the 2->1 test), the rows taking turns round by round.
// Every process is pinned to its CPU; topics live in a private bus root under
// /dev/shm, removed at the end, also on error (and, after a SIGKILL, by the
// next run). Run with --help for the options.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/shmbus.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Errors: set-up failures throw Failure; main prints it, cleans up, exits 1.

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& what) {
  throw Failure(what);
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

// ---------------------------------------------------------------------------
// Clock: rdtsc (invariant TSC) calibrated against steady_clock; steady_clock elsewhere.

#if defined(__x86_64__) || defined(__i386__)
constexpr const char* kClockName = "rdtsc (calibrated against steady_clock)";
inline std::uint64_t ticks() noexcept {
  _mm_lfence();  // earlier loads done before the stamp ...
  const std::uint64_t t = __rdtsc();
  _mm_lfence();  // ... and later work not started before it
  return t;
}
#else
constexpr const char* kClockName = "steady_clock";
inline std::uint64_t ticks() noexcept {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
          .count());
}
#endif

double calibrate_ns_per_tick(std::chrono::milliseconds span) {
  const auto s0 = Clock::now();
  const std::uint64_t c0 = ticks();
  while (Clock::now() - s0 < span) {
  }
  const auto s1 = Clock::now();
  const std::uint64_t c1 = ticks();
  const double ns =
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(s1 - s0).count());
  if (c1 <= c0) fail("the clock did not advance during calibration");
  return ns / static_cast<double>(c1 - c0);
}

// The spin of every busy-wait loop below, shmbus and references alike:
// `pause` (the library's BusySpin) unless --spin tight.
bool g_tight_spin = false;
inline void relax() noexcept {
  if (g_tight_spin) {
    std::atomic_signal_fence(std::memory_order_seq_cst);  // a compiler barrier only
    return;
  }
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

template <class T>
std::atomic_ref<T> atomic(T& v) noexcept {
  return std::atomic_ref<T>(v);
}

// ---------------------------------------------------------------------------
// Log-linear histogram: values < 128 exactly, then 64 sub-buckets per power of two.

class Histogram {
 public:
  static constexpr int kSubBits = 6;
  static constexpr std::uint64_t kSub = 1u << kSubBits;
  static constexpr std::size_t kBuckets = 2 * kSub + (63 - kSubBits) * kSub;

  void clear() noexcept { *this = Histogram{}; }
  void record(std::uint64_t v) noexcept {
    ++counts_[index(v)];
    ++count_;
    sum_ += v;
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }
  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0;
  }
  // The middle of the bucket holding the q-quantile, clamped to [min, max].
  double quantile(double q) const noexcept {
    if (count_ == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
    const std::uint64_t want = std::max<std::uint64_t>(1, std::min(rank, count_));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= want) {
        const double mid = static_cast<double>(lower(i)) + (static_cast<double>(width(i)) - 1) / 2;
        return std::clamp(mid, static_cast<double>(min()), static_cast<double>(max_));
      }
    }
    return static_cast<double>(max_);
  }

  static std::size_t index(std::uint64_t v) noexcept {
    if (v < 2 * kSub) return static_cast<std::size_t>(v);
    const int e = 63 - std::countl_zero(v);  // >= kSubBits + 1
    const std::uint64_t sub = (v >> (e - kSubBits)) & (kSub - 1);
    return static_cast<std::size_t>(2 * kSub + static_cast<std::uint64_t>(e - kSubBits - 1) * kSub +
                                    sub);
  }
  static std::uint64_t lower(std::size_t i) noexcept {
    if (i < 2 * kSub) return i;
    const std::uint64_t j = i - 2 * kSub;
    const std::uint64_t e = j / kSub + kSubBits + 1;
    return (kSub + j % kSub) << (e - kSubBits);
  }
  static std::uint64_t width(std::size_t i) noexcept {
    if (i < 2 * kSub) return 1;
    return std::uint64_t{1} << ((i - 2 * kSub) / kSub + 1);
  }

 private:
  std::uint64_t counts_[kBuckets] = {};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
};

struct Summary {
  std::uint64_t count = 0;
  double min = 0, p50 = 0, p90 = 0, p99 = 0, p999 = 0, p9999 = 0, max = 0, mean = 0;
};

Summary summarize(const Histogram& h, double ns_per_tick) {
  Summary s;
  s.count = h.count();
  s.min = static_cast<double>(h.min()) * ns_per_tick;
  s.p50 = h.quantile(0.50) * ns_per_tick;
  s.p90 = h.quantile(0.90) * ns_per_tick;
  s.p99 = h.quantile(0.99) * ns_per_tick;
  s.p999 = h.quantile(0.999) * ns_per_tick;
  s.p9999 = h.quantile(0.9999) * ns_per_tick;
  s.max = static_cast<double>(h.max()) * ns_per_tick;
  s.mean = h.mean() * ns_per_tick;
  return s;
}

// ---------------------------------------------------------------------------
// Options.

enum class WaitMode { Spin, Futex, Both };
enum class Publish { Offer, Claim, Both };

struct Config {
  int cpu_a = 0;
  int cpu_b = 1;
  int cpu_c = -1;  // second producer of the 2->1 test; -1: shares cpu_a
  std::uint64_t round_trips = 1'000'000;
  std::uint64_t warmup = 100'000;
  std::uint64_t futex_round_trips = 20'000;
  std::vector<std::uint32_t> sizes{32, 64, 256, 1024, 4096};
  std::vector<std::uint32_t> tput_sizes{64, 1024, 65536};
  std::uint64_t messages = 0;  // 0: by payload size
  std::uint32_t batch = 256;
  std::uint32_t idle_spins = 64;
  std::uint32_t rounds = 8;
  WaitMode wait = WaitMode::Both;
  Publish publish = Publish::Offer;
  bool throughput = true;
  bool round_trips_on = true;  // busy-spin round trips
  bool futex_on = true;        // blocking round trips
  bool tight_spin = false;
  std::uint64_t futex_gap_us = 250;
  bool quick = false;
  bool json = false;
  int timeout_s = 120;
  double ns_per_tick = 1;
};

constexpr const char* kUsage = R"(usage: shmbus-latency [options]

Round-trip latency and one-way throughput of shmbus between two pinned
processes, next to a bare cache-line ping-pong and a bare SPSC ring measured
in the same run. Topics live in a private bus root under /dev/shm
(SHMBUS_SHM_ROOT), removed at exit.

  --cpus A,B[,C]      CPUs of process A (pinger, producer) and B (echo,
                      consumer); C: the second producer of the 2->1 throughput
                      test (default: it shares A). Default 0,1
  --round-trips N     measured busy-spin round trips per test (default 1000000)
  --warmup N          round trips before measuring (default 100000)
  --sizes LIST        round-trip payload sizes in bytes, >= 8
                      (default 32,64,256,1024,4096)
  --wait MODE         spin: busy-spin round trips only; futex: blocking
                      round trips only (WaitStrategy::Futex, poll_wait;
                      --round-trips of them); both (default): busy-spin plus a
                      short blocking section (--futex-round-trips)
  --futex-round-trips N  blocking round trips in --wait both (default 20000)
  --futex-gap US      idle time between the round trips of the second
                      blocking test, long enough for both sides to fall
                      asleep (default 250; 0: skip that test)
  --spin HOW          pause (default; as WaitStrategy::BusySpin) or tight:
                      what every busy-wait loop does between two polls
  --publish HOW       offer (default) or claim: how the pinger publishes
                      (Producer::offer, or claim + memcpy + commit); both:
                      offer, plus extra claim+commit rows
  --messages N        messages per throughput row, over all its rounds
                      (default: 8 GiB worth, at most 40000000)
  --tput-sizes LIST   throughput payload sizes, >= 16 (default 64,1024,65536)
  --batch N           consumer poll batch in the throughput tests (default 256)
  --idle-spins N      throughput consumers that find nothing pause N times
                      before looking again (default 64)
  --rounds N          throughput rounds per row, taken in turns (default 8)
  --no-throughput     skip the throughput tests
  --only LIST         run only these sections: spin (busy-spin round trips),
                      futex (blocking round trips), tput (throughput)
  --timeout S         give up on a test after S seconds (default 120)
  --quick             smoke mode: a few thousand round trips and messages
  --json              also print the results as one JSON object (last line)
  --help              this text
)";

std::uint64_t parse_u64(std::string_view opt, std::string_view v) {
  if (v.empty()) fail(std::string(opt) + ": missing value");
  std::uint64_t r = 0;
  for (char c : v) {
    if (c < '0' || c > '9' || r > (~std::uint64_t{0} - 9) / 10)
      fail(std::string(opt) + ": '" + std::string(v) + "' is not a non-negative integer");
    r = r * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return r;
}

std::vector<std::uint64_t> parse_list(std::string_view opt, std::string_view v) {
  std::vector<std::uint64_t> out;
  while (true) {
    const std::size_t comma = v.find(',');
    out.push_back(parse_u64(opt, v.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return out;
}

std::vector<std::uint32_t> parse_sizes(std::string_view opt, std::string_view v,
                                       std::uint64_t least) {
  std::vector<std::uint32_t> out;
  for (std::uint64_t s : parse_list(opt, v)) {
    if (s < least || s > (std::uint64_t{1} << 20) - 1024)
      fail(format("%.*s: size %" PRIu64 " is out of range [%" PRIu64 ", %d]",
                  static_cast<int>(opt.size()), opt.data(), s, least, (1 << 20) - 1024));
    out.push_back(static_cast<std::uint32_t>(s));
  }
  return out;
}

Config parse_args(int argc, char** argv) {
  Config c;
  bool rt_set = false, warm_set = false, futex_set = false, only = false, rounds_set = false;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    std::string_view value;
    bool has_value = false;
    if (const std::size_t eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    auto next = [&]() -> std::string_view {
      if (has_value) return value;
      if (i + 1 >= args.size()) fail(std::string(a) + ": missing value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--cpus") {
      auto l = parse_list(a, next());
      if (l.size() < 2 || l.size() > 3) fail("--cpus: give two or three CPUs, e.g. --cpus 0,1");
      for (auto x : l)
        if (x > 1'000'000) fail("--cpus: CPU " + std::to_string(x) + " is out of range");
      c.cpu_a = static_cast<int>(l[0]);
      c.cpu_b = static_cast<int>(l[1]);
      c.cpu_c = l.size() == 3 ? static_cast<int>(l[2]) : -1;
      if (c.cpu_a == c.cpu_b) fail("--cpus: A and B must be different CPUs");
    } else if (a == "--round-trips") {
      c.round_trips = parse_u64(a, next());
      rt_set = true;
    } else if (a == "--warmup") {
      c.warmup = parse_u64(a, next());
      warm_set = true;
    } else if (a == "--futex-round-trips") {
      c.futex_round_trips = parse_u64(a, next());
      futex_set = true;
    } else if (a == "--sizes") {
      c.sizes = parse_sizes(a, next(), 8);
    } else if (a == "--tput-sizes") {
      c.tput_sizes = parse_sizes(a, next(), 16);
    } else if (a == "--messages") {
      c.messages = parse_u64(a, next());
    } else if (a == "--batch") {
      const std::uint64_t b = parse_u64(a, next());
      if (b < 1 || b > 65536) fail("--batch: must be 1..65536");
      c.batch = static_cast<std::uint32_t>(b);
    } else if (a == "--wait") {
      const std::string_view w = next();
      if (w == "spin") {
        c.wait = WaitMode::Spin;
      } else if (w == "futex") {
        c.wait = WaitMode::Futex;
      } else if (w == "both") {
        c.wait = WaitMode::Both;
      } else {
        fail("--wait: '" + std::string(w) + "' is not spin, futex or both");
      }
    } else if (a == "--futex-gap") {
      c.futex_gap_us = parse_u64(a, next());
      if (c.futex_gap_us > 1'000'000) fail("--futex-gap: at most 1000000 us");
    } else if (a == "--spin") {
      const std::string_view w = next();
      if (w == "pause") {
        c.tight_spin = false;
      } else if (w == "tight") {
        c.tight_spin = true;
      } else {
        fail("--spin: '" + std::string(w) + "' is not pause or tight");
      }
    } else if (a == "--publish") {
      const std::string_view w = next();
      if (w == "offer") {
        c.publish = Publish::Offer;
      } else if (w == "claim") {
        c.publish = Publish::Claim;
      } else if (w == "both") {
        c.publish = Publish::Both;
      } else {
        fail("--publish: '" + std::string(w) + "' is not offer, claim or both");
      }
    } else if (a == "--idle-spins") {
      const std::uint64_t v = parse_u64(a, next());
      if (v > 1'000'000) fail("--idle-spins: at most 1000000");
      c.idle_spins = static_cast<std::uint32_t>(v);
    } else if (a == "--rounds") {
      const std::uint64_t v = parse_u64(a, next());
      if (v < 1 || v > 1000) fail("--rounds: must be 1..1000");
      c.rounds = static_cast<std::uint32_t>(v);
      rounds_set = true;
    } else if (a == "--no-throughput") {
      c.throughput = false;
    } else if (a == "--only") {
      std::string_view l = next();
      only = true;
      c.round_trips_on = c.futex_on = c.throughput = false;
      while (true) {
        const std::size_t comma = l.find(',');
        const std::string_view w = l.substr(0, comma);
        if (w == "spin") {
          c.round_trips_on = true;
        } else if (w == "futex") {
          c.futex_on = true;
        } else if (w == "tput") {
          c.throughput = true;
        } else {
          fail("--only: '" + std::string(w) + "' is not spin, futex or tput");
        }
        if (comma == std::string_view::npos) break;
        l.remove_prefix(comma + 1);
      }
    } else if (a == "--timeout") {
      const std::uint64_t t = parse_u64(a, next());
      if (t < 1 || t > 86400) fail("--timeout: must be 1..86400 seconds");
      c.timeout_s = static_cast<int>(t);
    } else if (a == "--quick") {
      c.quick = true;
    } else if (a == "--json") {
      c.json = true;
    } else {
      fail("unknown option '" + std::string(args[i]) + "' (see --help)");
    }
  }
  if (c.quick) {
    if (!rt_set) c.round_trips = 2'000;
    if (!warm_set) c.warmup = 200;
    if (!futex_set) c.futex_round_trips = 500;
    if (!rounds_set) c.rounds = 1;
  }
  if (c.round_trips == 0) fail("--round-trips: must be at least 1");
  if (c.wait == WaitMode::Futex) {
    c.futex_round_trips = c.round_trips;
    if (!only) c.round_trips_on = c.throughput = false;
  }
  if (c.wait == WaitMode::Spin) c.futex_on = false;
  return c;
}

std::uint64_t messages_for(const Config& c, std::uint32_t size) {
  if (c.messages != 0) return c.messages;
  if (c.quick) return std::clamp<std::uint64_t>((std::uint64_t{16} << 20) / size, 500, 5'000);
  return std::clamp<std::uint64_t>((std::uint64_t{8} << 30) / size, 10'000, 40'000'000);
}

// ---------------------------------------------------------------------------
// The private bus root, and the signals that must not leave it behind.

std::string g_root;  // removed at exit

void remove_root() noexcept {
  if (g_root.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(g_root, ec);
  if (ec)
    std::fprintf(stderr, "shmbus-latency: cannot remove %s: %s\n", g_root.c_str(),
                 ec.message().c_str());
  g_root.clear();
}

// Roots are /dev/shm/shmbus-latency.<pid>.<random>. A run killed with SIGKILL
// cannot remove its own; the next run removes those whose pid is gone.
void remove_stale_roots() noexcept {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = e.path().filename().string();
    constexpr std::string_view kPrefix = "shmbus-latency.";
    if (!name.starts_with(kPrefix)) continue;
    const std::size_t dot = name.find('.', kPrefix.size());
    if (dot == std::string::npos || dot == kPrefix.size()) continue;
    const std::string pid_text = name.substr(kPrefix.size(), dot - kPrefix.size());
    if (pid_text.find_first_not_of("0123456789") != std::string::npos || pid_text.size() > 9)
      continue;
    const auto pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    std::error_code rm;
    std::filesystem::remove_all(e.path(), rm);
  }
}

std::string make_root() {
  remove_stale_roots();
  std::string templ = format("/dev/shm/shmbus-latency.%d.XXXXXX", static_cast<int>(::getpid()));
  if (::mkdtemp(templ.data()) == nullptr)
    fail(format("cannot create a private bus root under /dev/shm: %s", std::strerror(errno)));
  g_root = templ;
  if (::setenv("SHMBUS_SHM_ROOT", g_root.c_str(), 1) != 0)
    fail(format("setenv SHMBUS_SHM_ROOT: %s", std::strerror(errno)));
  return g_root;
}

// The parent keeps these blocked and collects them with sigtimedwait while it
// waits for its children; a termination signal ends the run through the
// normal error path (children killed, root removed).
sigset_t g_wait_signals;
void no_op_handler(int) {}

void setup_signals() {
  sigemptyset(&g_wait_signals);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&g_wait_signals, s);
  struct sigaction sa {};
  sa.sa_handler = no_op_handler;  // SIGCHLD must not be discarded as "ignored"
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGCHLD, &sa, nullptr);
  ::sigprocmask(SIG_BLOCK, &g_wait_signals, nullptr);
}

void check_interrupted() {
  const timespec zero{};
  sigset_t term;
  sigemptyset(&term);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&term, s);
  const int sig = ::sigtimedwait(&term, nullptr, &zero);
  if (sig > 0) fail(format("interrupted by signal %d (%s)", sig, strsignal(sig)));
}

// ---------------------------------------------------------------------------
// Shared memory: anonymous MAP_SHARED mappings made before fork.

class SharedMemory {
 public:
  SharedMemory() = default;
  explicit SharedMemory(std::size_t bytes) : size_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) fail(format("mmap of %zu shared bytes: %s", bytes, std::strerror(errno)));
    base_ = static_cast<std::byte*>(p);
  }
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory() {
    if (base_ != nullptr) ::munmap(base_, size_);
  }
  std::byte* data() const noexcept { return base_; }

 private:
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

constexpr int kMaxProcs = 3;

// Written by the children, read by the parent after they exit.
struct Control {
  std::uint32_t failed[kMaxProcs];
  char error[kMaxProcs][512];
  std::uint64_t messages;
  double seconds;
  std::uint64_t full[kMaxProcs];  // throughput: a producer's retries after Full
  std::uint64_t empty;            // throughput: the consumer's empty polls after the first message
};

// ---------------------------------------------------------------------------
// Processes. run_processes forks one child per role, pins it, lets it set up,
// releases all at once ("go"), and waits for every child to exit.

struct Role {
  const char* name;
  int cpu;
  std::function<void(const std::function<void()>& ready)> body;  // calls ready() once set up
};

[[noreturn]] void child_main(const Role& role, int index, Control* ctl, int ready_fd, int go_fd) {
  ::signal(SIGCHLD, SIG_DFL);
  ::sigprocmask(SIG_UNBLOCK, &g_wait_signals, nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  auto report = [&](const std::string& what) {
    std::snprintf(ctl->error[index], sizeof ctl->error[index], "process %s (CPU %d): %s", role.name,
                  role.cpu, what.c_str());
    ctl->failed[index] = 1;
    ::_exit(2);
  };
  try {
    if (auto ok = shmbus::pin_thread_to_cpu(role.cpu); !ok) report(ok.error().message);
    role.body([&] {
      char b = 1;
      if (::write(ready_fd, &b, 1) != 1) report("ready pipe: " + std::string(strerror(errno)));
      ::close(ready_fd);
      ssize_t n;
      do n = ::read(go_fd, &b, 1);
      while (n < 0 && errno == EINTR);
      ::close(go_fd);
    });
  } catch (const std::exception& e) {
    report(e.what());
  }
  ::_exit(0);
}

void run_processes(const Config& cfg, Control* ctl, const std::vector<Role>& roles) {
  check_interrupted();
  std::memset(ctl->failed, 0, sizeof ctl->failed);
  std::memset(ctl->error, 0, sizeof ctl->error);
  int ready[2], go[2];
  if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0)
    fail(format("pipe: %s", std::strerror(errno)));
  std::fflush(nullptr);  // children must not inherit unwritten output
  std::vector<pid_t> pids;
  std::vector<bool> exited;
  for (std::size_t i = 0; i < roles.size(); ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int e = errno;
      for (pid_t p : pids) ::kill(p, SIGKILL);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      fail(format("fork: %s", std::strerror(e)));
    }
    if (pid == 0) {
      ::close(ready[0]);
      ::close(go[1]);
      child_main(roles[i], static_cast<int>(i), ctl, ready[1], go[0]);
    }
    pids.push_back(pid);
    exited.push_back(false);
  }
  ::close(ready[1]);
  ::close(go[0]);
  int go_fd = go[1];

  auto kill_all = [&] {
    for (std::size_t i = 0; i < pids.size(); ++i)
      if (!exited[i]) ::kill(pids[i], SIGKILL);
    for (std::size_t i = 0; i < pids.size(); ++i)
      if (!exited[i]) ::waitpid(pids[i], nullptr, 0);
    ::close(ready[0]);
    if (go_fd >= 0) ::close(go_fd);
  };
  // Reaps exited children; returns an error text if one failed.
  auto reap = [&]() -> std::string {
    for (std::size_t i = 0; i < pids.size(); ++i) {
      if (exited[i]) continue;
      int st = 0;
      const pid_t r = ::waitpid(pids[i], &st, WNOHANG);
      if (r != pids[i]) continue;
      exited[i] = true;
      if (ctl->failed[i]) return ctl->error[i];
      if (WIFSIGNALED(st))
        return format("process %s (CPU %d) was killed by signal %d (%s)", roles[i].name,
                      roles[i].cpu, WTERMSIG(st), strsignal(WTERMSIG(st)));
      if (WEXITSTATUS(st) != 0)
        return format("process %s (CPU %d) exited with status %d", roles[i].name, roles[i].cpu,
                      WEXITSTATUS(st));
    }
    return {};
  };
  const auto deadline = Clock::now() + std::chrono::seconds(cfg.timeout_s);
  auto left = [&] {
    return std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
  };

  // Set-up: every child writes one byte to `ready`.
  std::size_t ready_count = 0;
  while (ready_count < roles.size()) {
    pollfd pfd{ready[0], POLLIN, 0};
    const int n = ::poll(&pfd, 1, 10);
    if (n > 0) {
      char buf[8];
      const ssize_t got = ::read(ready[0], buf, sizeof buf);
      if (got > 0) ready_count += static_cast<std::size_t>(got);
    }
    if (std::string e = reap(); !e.empty()) {
      kill_all();
      fail(e);
    }
    if (ready_count < roles.size() &&
        std::any_of(exited.begin(), exited.end(), [](bool x) { return x; })) {
      kill_all();
      fail("a process exited before it was ready");
    }
    if (left() == 0) {
      kill_all();
      fail(format("set-up did not finish within %d s", cfg.timeout_s));
    }
    try {
      check_interrupted();
    } catch (...) {
      kill_all();
      throw;
    }
  }
  ::close(go_fd);  // go: every child's read() returns
  go_fd = -1;

  // Run: sleep in sigtimedwait so as not to disturb the pinned CPUs.
  while (std::find(exited.begin(), exited.end(), false) != exited.end()) {
    const std::int64_t ms = left();
    if (ms == 0) {
      kill_all();
      fail(format("test did not finish within %d s (raise --timeout?)", cfg.timeout_s));
    }
    const timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1'000'000};
    const int sig = ::sigtimedwait(&g_wait_signals, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      kill_all();
      fail(format("interrupted by signal %d (%s)", sig, strsignal(sig)));
    }
    if (std::string e = reap(); !e.empty()) {
      kill_all();
      fail(e);
    }
  }
  ::close(ready[0]);
}

// Checks that every CPU can be pinned, before any test runs.
void preflight(const Config& cfg, Control* ctl) {
  std::vector<Role> roles;
  auto nothing = [](const std::function<void()>& ready) { ready(); };
  roles.push_back({"A", cfg.cpu_a, nothing});
  roles.push_back({"B", cfg.cpu_b, nothing});
  if (cfg.cpu_c >= 0) roles.push_back({"C", cfg.cpu_c, nothing});
  run_processes(cfg, ctl, roles);
}

// ---------------------------------------------------------------------------
// shmbus set-up helpers (parent creates topics, children open them).

shmbus::TopicOptions latency_topic() {
  shmbus::TopicOptions o;
  o.policy = shmbus::Policy::Block;
  o.frame_alignment = 64;
  o.exclusive_producer = true;
  o.segment_bytes = 1u << 20;
  o.segment_count = 4;
  o.max_producers = 4;
  o.max_consumers = 4;
  return o;
}

void create_topic(const std::string& bus, const char* topic, const shmbus::TopicOptions& o) {
  if (auto ok = shmbus::Topic::create(bus, topic, o); !ok)
    fail("cannot create topic " + bus + "/" + topic + ": " + ok.error().message);
}

// Removes a test's bus directory (its topics) after the test.
struct BusGuard {
  std::string bus;
  ~BusGuard() {
    std::error_code ec;
    std::filesystem::remove_all(g_root + "/" + bus, ec);
  }
};

shmbus::Producer open_producer(const std::string& bus, const char* topic,
                               const shmbus::ProducerOptions& o) {
  auto p = shmbus::Producer::open(bus, topic, o);
  if (!p) fail(std::string("cannot open producer on ") + topic + ": " + p.error().message);
  return std::move(p).value();
}

shmbus::Consumer open_consumer(const std::string& bus, const char* topic,
                               const shmbus::ConsumerOptions& o) {
  auto c = shmbus::Consumer::open(bus, topic, o);
  if (!c) fail(std::string("cannot open consumer on ") + topic + ": " + c.error().message);
  return std::move(c).value();
}

[[noreturn]] void bad_status(const char* what, shmbus::Status s) {
  fail(std::string(what) + " returned " + shmbus::to_string(s));
}

// ---------------------------------------------------------------------------
// Results.

struct RtResult {
  std::string group;  // "spin" or "futex"
  std::string name;
  std::uint32_t size = 0;
  Summary s;
  double switches_a = -1;  // futex: voluntary context switches per round trip
  double switches_b = -1;
};

struct TputResult {
  std::string name;
  std::uint32_t size = 0;
  int producers = 1;
  std::uint64_t messages = 0;
  double seconds = 0;
  std::uint64_t full = 0;   // producer retries after Full (the consumer was behind)
  std::uint64_t empty = 0;  // consumer polls that found nothing (the producer was behind)
  double per_msg(std::uint64_t v) const {
    return messages > 0 ? static_cast<double>(v) / static_cast<double>(messages) : 0;
  }
  double msgs_per_s() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
  double gb_per_s() const { return msgs_per_s() * size / 1e9; }
};

// ---------------------------------------------------------------------------
// The bare SPSC ring: slots of {u64 seq, payload} rounded up to 64-byte lines,
// `slots` of them (the same bytes as a shmbus ring of the same test), a
// consumer index published per batch and cached by the producer (back-pressure).

struct BareRing {
  struct alignas(128) Head {
    std::uint64_t consumed;  // consumer: store release per batch
    std::byte pad[120];
  };
  Head* head = nullptr;
  std::byte* slots = nullptr;
  std::uint64_t slot_bytes = 0;
  std::uint64_t count = 0;

  static std::uint64_t slot_size(std::uint32_t payload) { return (8 + payload + 63) & ~63ull; }
  static std::size_t bytes_for(std::uint32_t payload, std::uint64_t ring_bytes) {
    const std::uint64_t n = std::max<std::uint64_t>(2, ring_bytes / slot_size(payload));
    return static_cast<std::size_t>((4096 + n * slot_size(payload) + 4095) & ~4095ull);  // page
  }
  static BareRing at(std::byte* base, std::uint32_t payload, std::uint64_t ring_bytes) {
    BareRing r;
    r.head = new (base) Head{};
    r.slots = base + 4096;
    r.slot_bytes = slot_size(payload);
    r.count = std::max<std::uint64_t>(2, ring_bytes / r.slot_bytes);
    return r;
  }
  std::uint64_t& seq(std::uint64_t index) const {
    return *reinterpret_cast<std::uint64_t*>(slots + index * slot_bytes);
  }
  std::byte* payload(std::uint64_t index) const { return slots + index * slot_bytes + 8; }
};

class BareWriter {
 public:
  explicit BareWriter(const BareRing& r) : r_(r) {}
  // Message number seq_ + 1; false when the ring is full.
  bool try_write(const std::byte* src, std::size_t n) noexcept {
    const std::uint64_t s = seq_ + 1;
    if (s > limit_) {
      limit_ = atomic(r_.head->consumed).load(std::memory_order_acquire) + r_.count;
      if (s > limit_) return false;
    }
    std::memcpy(r_.payload(index_), src, n);
    atomic(r_.seq(index_)).store(s, std::memory_order_release);
    seq_ = s;
    if (++index_ == r_.count) index_ = 0;
    return true;
  }

 private:
  BareRing r_;
  std::uint64_t seq_ = 0;
  std::uint64_t index_ = 0;
  std::uint64_t limit_ = 0;
};

class BareReader {
 public:
  explicit BareReader(const BareRing& r) : r_(r) {}
  // Hands up to `max` messages to f(const std::byte*), then publishes the index.
  template <class F>
  std::uint32_t read(F&& f, std::uint32_t max) noexcept {
    std::uint32_t n = 0;
    while (n < max && atomic(r_.seq(index_)).load(std::memory_order_acquire) == seq_ + 1) {
      f(static_cast<const std::byte*>(r_.payload(index_)));
      ++seq_;
      if (++index_ == r_.count) index_ = 0;
      ++n;
    }
    if (n > 0) atomic(r_.head->consumed).store(seq_, std::memory_order_release);
    return n;
  }

 private:
  BareRing r_;
  std::uint64_t seq_ = 0;
  std::uint64_t index_ = 0;
};

constexpr std::uint64_t kRingBytes = 4ull << 20;  // shmbus: 4 segments x 1 MiB

// ---------------------------------------------------------------------------
// Round trips. Every mechanism is a Channel with a ping side (process A:
// publishes, waits for the echo, records the sample) and an echo side
// (process B). One pair of processes runs all the channels of a suite,
// taking turns in blocks of kBlock round trips, so that whatever the host
// does to the two vCPUs during the run lands on every mechanism alike (on
// this VM the cross-CPU latency drifts by 2-4x from one minute to the next).

constexpr std::uint64_t kBlock = 1000;   // round trips per turn
constexpr std::uint64_t kBlockSkip = 8;  // not recorded after a change of channel

class Channel {
 public:
  Channel(std::string name, std::uint32_t size) : name_(std::move(name)), size_(size) {}
  virtual ~Channel() = default;
  virtual void open_ping() = 0;  // in A, before it reports ready
  virtual void open_echo() = 0;  // in B
  // A: n round trips; those with index >= skip go into h (when non-null).
  virtual void ping(Histogram* h, std::uint64_t n, std::uint64_t skip) = 0;
  // B: echoes n messages; `measured`: count context switches.
  virtual void echo(std::uint64_t n, bool measured) = 0;
  virtual void close() {}
  virtual bool blocking() const { return false; }
  const std::string& name() const { return name_; }
  std::uint32_t size() const { return size_; }
  std::uint64_t switches = 0;  // voluntary context switches while measured (blocking only)

 protected:
  std::string name_;
  std::uint32_t size_;
};

std::uint64_t voluntary_switches() noexcept {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<std::uint64_t>(u.ru_nvcsw);
}

// (i) Bare cache-line ping-pong: a counter per direction, each in its own
// 128-byte pair of lines of a shared anonymous mapping.
struct alignas(128) PaddedWord {
  std::uint64_t v;
  std::byte pad[120];
};

class LineChannel : public Channel {
 public:
  LineChannel() : Channel("bare cache-line", 8), mem_(2 * sizeof(PaddedWord)) {
    ping_ = new (mem_.data()) PaddedWord{};
    pong_ = new (mem_.data() + sizeof(PaddedWord)) PaddedWord{};
  }
  void open_ping() override {}
  void open_echo() override {}
  void ping(Histogram* h, std::uint64_t n, std::uint64_t skip) override {
    for (std::uint64_t k = 0; k < n; ++k) {
      const std::uint64_t s = ++seq_;
      const std::uint64_t t0 = ticks();
      atomic(ping_->v).store(s, std::memory_order_release);
      while (atomic(pong_->v).load(std::memory_order_acquire) != s) relax();
      const std::uint64_t t1 = ticks();
      if (h != nullptr && k >= skip) h->record(t1 - t0);
    }
  }
  void echo(std::uint64_t n, bool) override {
    for (std::uint64_t k = 0; k < n; ++k) {
      const std::uint64_t s = ++seq_;
      while (atomic(ping_->v).load(std::memory_order_acquire) != s) relax();
      atomic(pong_->v).store(s, std::memory_order_release);
    }
  }

 private:
  SharedMemory mem_;
  PaddedWord* ping_;
  PaddedWord* pong_;
  std::uint64_t seq_ = 0;
};

// (ii) Bare SPSC ping-pong: one BareRing per direction; B copies the payload
// from its ping slot into its pong slot.
class SpscChannel : public Channel {
 public:
  explicit SpscChannel(std::uint32_t size)
      : Channel("bare SPSC ring", size),
        one_(BareRing::bytes_for(size, kRingBytes)),
        mem_(2 * one_),
        ping_(BareRing::at(mem_.data(), size, kRingBytes)),
        pong_(BareRing::at(mem_.data() + one_, size, kRingBytes)),
        msg_(size) {}
  void open_ping() override {
    writer_.emplace(ping_);
    reader_.emplace(pong_);
  }
  void open_echo() override {
    reader_.emplace(ping_);
    writer_.emplace(pong_);
  }
  void ping(Histogram* h, std::uint64_t n, std::uint64_t skip) override {
    std::uint64_t got = 0;
    auto on = [&](const std::byte* p) { std::memcpy(&got, p, 8); };
    for (std::uint64_t k = 0; k < n; ++k) {
      const std::uint64_t s = ++seq_;
      std::memcpy(msg_.data(), &s, 8);
      const std::uint64_t t0 = ticks();
      if (!writer_->try_write(msg_.data(), size_)) fail("bare ring unexpectedly full");
      while (reader_->read(on, 64) == 0) relax();
      const std::uint64_t t1 = ticks();
      if (got != s) fail(format("bare SPSC: echo %" PRIu64 " for %" PRIu64, got, s));
      if (h != nullptr && k >= skip) h->record(t1 - t0);
    }
  }
  void echo(std::uint64_t n, bool) override {
    auto on = [&](const std::byte* p) {
      if (!writer_->try_write(p, size_)) fail("bare ring unexpectedly full");
    };
    for (std::uint64_t done = 0; done < n;) {
      const std::uint32_t k = reader_->read(on, 64);
      if (k == 0) relax();
      done += k;
    }
  }

 private:
  std::size_t one_;
  SharedMemory mem_;
  BareRing ping_, pong_;
  std::vector<std::byte> msg_;
  std::uint64_t seq_ = 0;
  std::optional<BareWriter> writer_;
  std::optional<BareReader> reader_;
};

// shmbus: A publishes on "ping" and polls "pong"; B polls "ping" and, in its
// handler, offers the payload on "pong". Each channel has its own bus.
struct ShmbusRt {
  std::uint32_t size = 32;
  bool timestamps = false;
  bool futex = false;
  bool claim = false;        // A publishes with claim + memcpy + commit instead of offer
  std::uint64_t gap_us = 0;  // A sleeps this long before each round trip
};

class ShmbusChannel : public Channel {
 public:
  ShmbusChannel(std::string name, const ShmbusRt& t)
      : Channel(std::move(name), t.size), t_(t), guard_{format("rt%d", serial_++)}, msg_(t.size) {
    create_topic(guard_.bus, "ping", latency_topic());
    create_topic(guard_.bus, "pong", latency_topic());
  }
  void open_ping() override {
    producer_.emplace(open_producer(guard_.bus, "ping", producer_options()));
    consumer_.emplace(open_consumer(guard_.bus, "pong", consumer_options()));
  }
  void open_echo() override {
    consumer_.emplace(open_consumer(guard_.bus, "ping", consumer_options()));
    producer_.emplace(open_producer(guard_.bus, "pong", producer_options()));
  }
  void close() override {
    producer_.reset();
    consumer_.reset();
  }
  bool blocking() const override { return t_.futex; }

  void ping(Histogram* h, std::uint64_t n, std::uint64_t skip) override {
    std::uint64_t got = 0;
    auto on = [&](const shmbus::Message& m) { std::memcpy(&got, m.payload.data(), 8); };
    shmbus::Producer& prod = *producer_;
    shmbus::Consumer& cons = *consumer_;
    const timespec gap{0, static_cast<long>(t_.gap_us * 1000)};
    for (std::uint64_t k = 0; k < n; ++k) {
      const std::uint64_t s = ++seq_;
      std::memcpy(msg_.data(), &s, 8);
      if (t_.gap_us != 0) ::nanosleep(&gap, nullptr);
      const bool measured = h != nullptr && k >= skip;
      // Blocking mode counts A's context switches inside the round trips only.
      const std::uint64_t s0 = t_.futex && measured ? voluntary_switches() : 0;
      const std::uint64_t t0 = ticks();
      if (t_.claim) {
        shmbus::Claim c;
        if (auto st = prod.claim(size_, c); st != shmbus::Status::Ok) bad_status("claim", st);
        std::memcpy(c.payload.data(), msg_.data(), size_);
        if (auto st = prod.commit(c); st != shmbus::Status::Ok) bad_status("commit", st);
      } else if (auto st = prod.offer(msg_); st != shmbus::Status::Ok) {
        bad_status("offer", st);
      }
      for (;;) {
        const shmbus::PollResult r =
            t_.futex ? cons.poll_wait(on, 64, kPollTimeout) : cons.poll(on, 64);
        if (r.count > 0) break;
        if (r.status == shmbus::Status::Empty) {
          relax();
        } else if (r.status != shmbus::Status::Timeout) {
          bad_status("poll on pong", r.status);
        }
      }
      const std::uint64_t t1 = ticks();
      if (got != s) fail(format("pong carried %" PRIu64 ", expected %" PRIu64, got, s));
      if (measured) {
        h->record(t1 - t0);
        if (t_.futex) switches += voluntary_switches() - s0;
      }
    }
  }

  void echo(std::uint64_t n, bool measured) override {
    shmbus::Producer& prod = *producer_;
    shmbus::Consumer& cons = *consumer_;
    shmbus::Status echo_status = shmbus::Status::Ok;
    auto on = [&](const shmbus::Message& m) {
      if (auto st = prod.offer(m.payload); st != shmbus::Status::Ok) echo_status = st;
    };
    const std::uint64_t s0 = t_.futex && measured ? voluntary_switches() : 0;
    for (std::uint64_t done = 0; done < n;) {
      const shmbus::PollResult r =
          t_.futex ? cons.poll_wait(on, 64, kPollTimeout) : cons.poll(on, 64);
      done += r.count;
      if (echo_status != shmbus::Status::Ok) bad_status("offer on pong", echo_status);
      if (r.status == shmbus::Status::Empty) {
        relax();
      } else if (r.status != shmbus::Status::Ok && r.status != shmbus::Status::Timeout) {
        bad_status("poll on ping", r.status);
      }
    }
    if (t_.futex && measured) switches += voluntary_switches() - s0;
  }

 private:
  static constexpr std::chrono::milliseconds kPollTimeout{100};
  shmbus::ProducerOptions producer_options() const {
    shmbus::ProducerOptions po;
    po.timestamps = t_.timestamps;
    po.wait = shmbus::WaitStrategy::BusySpin;
    return po;
  }
  shmbus::ConsumerOptions consumer_options() const {
    shmbus::ConsumerOptions co;
    co.wait = t_.futex ? shmbus::WaitStrategy::Futex : shmbus::WaitStrategy::BusySpin;
    return co;
  }

  static inline int serial_ = 0;
  ShmbusRt t_;
  BusGuard guard_;
  std::vector<std::byte> msg_;
  std::uint64_t seq_ = 0;
  std::optional<shmbus::Producer> producer_;
  std::optional<shmbus::Consumer> consumer_;
};

// Per channel, written by A and B, read by the parent.
struct RtShared {
  Histogram hist;
  std::uint64_t switches_a;
  std::uint64_t switches_b;
};

// Runs the channels in one pair of processes: a warm-up of each, then turns of
// kBlock round trips until every channel has `round_trips` samples.
std::vector<RtResult> run_rt_suite(const Config& cfg, Control* ctl, const char* group,
                                   std::vector<std::unique_ptr<Channel>>& chans,
                                   std::uint64_t round_trips, std::uint64_t warmup) {
  SharedMemory mem(chans.size() * sizeof(RtShared));
  auto* shared = new (mem.data()) RtShared[chans.size()]{};
  const bool turns = chans.size() > 1;
  const std::uint64_t skip = turns ? kBlockSkip : 0;
  const std::uint64_t per_turn = turns ? kBlock - kBlockSkip : round_trips;
  // The schedule, identical in both processes: (channel, round trips) per turn.
  auto schedule = [&](auto&& turn) {
    std::vector<std::uint64_t> left(chans.size(), round_trips);
    for (bool any = true; any;) {
      any = false;
      for (std::size_t c = 0; c < chans.size(); ++c) {
        if (left[c] == 0) continue;
        const std::uint64_t take = std::min(left[c], per_turn);
        turn(c, take);
        left[c] -= take;
        any = true;
      }
    }
  };
  Role a{"A", cfg.cpu_a, [&](const std::function<void()>& ready) {
           std::vector<std::unique_ptr<Histogram>> hists;
           for (auto& ch : chans) {
             ch->open_ping();
             hists.push_back(std::make_unique<Histogram>());
           }
           ready();
           for (auto& ch : chans)
             if (warmup > 0) ch->ping(nullptr, warmup, 0);
           for (auto& ch : chans) ch->switches = 0;
           schedule([&](std::size_t c, std::uint64_t n) {
             chans[c]->ping(hists[c].get(), n + skip, skip);
           });
           for (std::size_t c = 0; c < chans.size(); ++c) {
             shared[c].hist = *hists[c];
             shared[c].switches_a = chans[c]->switches;
             chans[c]->close();
           }
         }};
  Role b{"B", cfg.cpu_b, [&](const std::function<void()>& ready) {
           for (auto& ch : chans) ch->open_echo();
           ready();
           for (auto& ch : chans)
             if (warmup > 0) ch->echo(warmup, false);
           for (auto& ch : chans) ch->switches = 0;
           schedule([&](std::size_t c, std::uint64_t n) { chans[c]->echo(n + skip, true); });
           for (std::size_t c = 0; c < chans.size(); ++c) {
             shared[c].switches_b = chans[c]->switches;
             chans[c]->close();
           }
         }};
  run_processes(cfg, ctl, {a, b});
  std::vector<RtResult> out;
  for (std::size_t c = 0; c < chans.size(); ++c) {
    RtResult r{group, chans[c]->name(), chans[c]->size(),
               summarize(shared[c].hist, cfg.ns_per_tick)};
    if (chans[c]->blocking()) {
      const auto n = static_cast<double>(round_trips);
      r.switches_a = static_cast<double>(shared[c].switches_a) / n;
      // B's count covers whole turns, the skipped round trips too.
      r.switches_b =
          static_cast<double>(shared[c].switches_b) /
          static_cast<double>(round_trips +
                              (turns ? skip * ((round_trips + per_turn - 1) / per_turn) : 0));
    }
    out.push_back(std::move(r));
  }
  for (std::size_t c = 0; c < chans.size(); ++c) shared[c].~RtShared();
  return out;
}

// ---------------------------------------------------------------------------
// One-way throughput. Producers write [u64 producer id][u64 sequence] at the
// head of each payload; the consumer checks the order per producer and copies
// the whole payload out (as a consumer that uses the data would read it).

// A throughput consumer that found nothing waits this long before looking
// again, so that it does not pull each line away from the producer as soon as
// it is written (the same for shmbus and the bare ring).
void idle(const Config& cfg) noexcept {
  for (std::uint32_t i = 0; i < cfg.idle_spins; ++i) relax();
}

struct Sink {
  std::vector<std::byte> buf;
  std::uint64_t next[kMaxProcs] = {};
  std::uint64_t count = 0;
  explicit Sink(std::uint32_t size) : buf(size) {}
  void take(const std::byte* p, std::size_t n) {
    std::uint64_t id, seq;
    std::memcpy(&id, p, 8);
    std::memcpy(&seq, p + 8, 8);
    if (id >= kMaxProcs || seq != next[id])
      fail(format("message out of order: producer %" PRIu64 " sequence %" PRIu64, id, seq));
    ++next[id];
    std::memcpy(buf.data(), p, n);
    ++count;
  }
};

void stamp(std::vector<std::byte>& msg, std::uint64_t id, std::uint64_t seq) {
  std::memcpy(msg.data(), &id, 8);
  std::memcpy(msg.data() + 8, &seq, 8);
}

void finish_tput(Control* ctl, std::uint64_t first_ticks, std::uint64_t first_count,
                 std::uint64_t end_ticks, std::uint64_t total, double ns_per_tick) {
  ctl->messages = total - first_count;
  ctl->seconds = static_cast<double>(end_ticks - first_ticks) * ns_per_tick * 1e-9;
}

TputResult bare_spsc_tput(const Config& cfg, Control* ctl, std::uint32_t size, std::uint64_t n) {
  SharedMemory mem(BareRing::bytes_for(size, kRingBytes));
  const BareRing ring = BareRing::at(mem.data(), size, kRingBytes);
  Role prod{"A", cfg.cpu_a, [&](const std::function<void()>& ready) {
              BareWriter w(ring);
              std::vector<std::byte> msg(size, std::byte{0x5a});
              std::uint64_t full = 0;
              ready();
              for (std::uint64_t i = 0; i < n; ++i) {
                stamp(msg, 0, i);
                while (!w.try_write(msg.data(), size)) {
                  ++full;
                  relax();
                }
              }
              ctl->full[0] = full;
            }};
  Role cons{"B", cfg.cpu_b, [&](const std::function<void()>& ready) {
              BareReader r(ring);
              Sink sink(size);
              auto on = [&](const std::byte* p) { sink.take(p, size); };
              ready();
              std::uint64_t first = 0, first_count = 0, empty = 0;
              while (sink.count < n) {
                if (r.read(on, cfg.batch) == 0) {
                  if (first != 0) ++empty;
                  idle(cfg);
                } else if (first == 0) {
                  first = ticks();
                  first_count = sink.count;
                }
              }
              finish_tput(ctl, first, first_count, ticks(), n, cfg.ns_per_tick);
              ctl->empty = empty;
            }};
  std::memset(ctl->full, 0, sizeof ctl->full);
  run_processes(cfg, ctl, {prod, cons});
  return {"bare SPSC ring", size, 1, ctl->messages, ctl->seconds, ctl->full[0], ctl->empty};
}

TputResult shmbus_tput(const Config& cfg, Control* ctl, std::uint32_t size, std::uint64_t n,
                       int producers, bool timestamps, const std::string& name) {
  static int serial = 0;
  const std::string bus = format("tp%d", serial++);
  BusGuard guard{bus};
  shmbus::TopicOptions o = latency_topic();
  o.exclusive_producer = producers == 1;
  create_topic(bus, "data", o);
  const std::uint64_t per = n / static_cast<std::uint64_t>(producers);
  const std::uint64_t total = per * static_cast<std::uint64_t>(producers);
  std::vector<Role> roles;
  for (int k = 0; k < producers; ++k) {
    const int cpu = k == 0 ? cfg.cpu_a : (cfg.cpu_c >= 0 ? cfg.cpu_c : cfg.cpu_a);
    roles.push_back({k == 0 ? "A" : "C", cpu, [&, k](const std::function<void()>& ready) {
                       shmbus::ProducerOptions po;
                       po.timestamps = timestamps;
                       po.wait = shmbus::WaitStrategy::BusySpin;
                       shmbus::Producer prod = open_producer(bus, "data", po);
                       std::vector<std::byte> msg(size, std::byte{0x5a});
                       std::uint64_t full = 0;
                       ready();
                       for (std::uint64_t i = 0; i < per; ++i) {
                         stamp(msg, static_cast<std::uint64_t>(k), i);
                         shmbus::Status s;
                         while ((s = prod.offer(msg)) == shmbus::Status::Full) {
                           ++full;
                           relax();
                         }
                         if (s != shmbus::Status::Ok) bad_status("offer", s);
                       }
                       ctl->full[k] = full;
                     }});
  }
  roles.push_back({"B", cfg.cpu_b, [&](const std::function<void()>& ready) {
                     shmbus::ConsumerOptions co;
                     co.wait = shmbus::WaitStrategy::BusySpin;
                     shmbus::Consumer cons = open_consumer(bus, "data", co);
                     Sink sink(size);
                     auto on = [&](const shmbus::Message& m) {
                       if (m.payload.size() != size) fail("payload size mismatch");
                       sink.take(m.payload.data(), size);
                     };
                     ready();
                     std::uint64_t first = 0, first_count = 0, empty = 0;
                     while (sink.count < total) {
                       const shmbus::PollResult r = cons.poll(on, cfg.batch);
                       if (r.status == shmbus::Status::Empty) {
                         if (first != 0) ++empty;
                         idle(cfg);
                       } else if (r.status != shmbus::Status::Ok) {
                         bad_status("poll", r.status);
                       } else if (first == 0) {
                         first = ticks();
                         first_count = sink.count;
                       }
                     }
                     finish_tput(ctl, first, first_count, ticks(), total, cfg.ns_per_tick);
                     ctl->empty = empty;
                   }});
  std::memset(ctl->full, 0, sizeof ctl->full);
  run_processes(cfg, ctl, roles);
  std::uint64_t full = 0;
  for (std::uint64_t f : ctl->full) full += f;
  return {name, size, producers, ctl->messages, ctl->seconds, full, ctl->empty};
}

// ---------------------------------------------------------------------------
// Output.

std::string size_text(std::uint32_t s) {
  if (s >= 1024 && s % 1024 == 0) return std::to_string(s / 1024) + " KiB";
  return std::to_string(s) + " B";
}

void print_rt_header() {
  std::printf("  %-30s %8s %8s %8s %8s %8s %8s %8s %9s %9s %9s\n", "test", "payload", "min", "p50",
              "p90", "p99", "p99.9", "p99.99", "max", "p50/line", "p50/spsc");
}

void print_rt_row(const RtResult& r, double line_p50, double spsc_p50) {
  const Summary& s = r.s;
  std::string l = line_p50 > 0 ? format("%.2fx", s.p50 / line_p50) : "";
  std::string p = spsc_p50 > 0 ? format("%.2fx", s.p50 / spsc_p50) : "";
  std::printf("  %-30s %8s %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %9.0f %9s %9s\n", r.name.c_str(),
              r.name == "bare cache-line" ? "-" : size_text(r.size).c_str(), s.min, s.p50, s.p90,
              s.p99, s.p999, s.p9999, s.max, l.c_str(), p.c_str());
  std::fflush(stdout);
}

void print_futex_header() {
  std::printf("  %-30s %8s %8s %8s %8s %8s %8s %8s %9s %9s %9s\n", "test", "payload", "min", "p50",
              "p90", "p99", "p99.9", "p99.99", "max", "A csw/rt", "B csw/rt");
}

void print_futex_row(const RtResult& r) {
  const Summary& s = r.s;
  std::printf("  %-30s %8s %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %9.0f %9.2f %9.2f\n", r.name.c_str(),
              size_text(r.size).c_str(), s.min, s.p50, s.p90, s.p99, s.p999, s.p9999, s.max,
              r.switches_a, r.switches_b);
  std::fflush(stdout);
}

void print_tput_header() {
  std::printf("  %-30s %8s %11s %12s %9s %10s %10s %10s\n", "test", "payload", "messages", "msgs/s",
              "GB/s", "vs bare", "full/msg", "idle/msg");
}

void print_tput_row(const TputResult& r, double bare) {
  std::string ratio = bare > 0 ? format("%.2f", r.msgs_per_s() / bare) : "";
  std::printf("  %-30s %8s %11" PRIu64 " %12.0f %9.2f %10s %10.3f %10.4f\n", r.name.c_str(),
              size_text(r.size).c_str(), r.messages, r.msgs_per_s(), r.gb_per_s(), ratio.c_str(),
              r.per_msg(r.full), r.per_msg(r.empty));
  std::fflush(stdout);
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

std::string json_summary(const Summary& s) {
  return format(
      "{\"count\":%" PRIu64
      ",\"min\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p99_9\":%.1f,\"p99_99\":%.1f,"
      "\"max\":%.1f,\"mean\":%.1f}",
      s.count, s.min, s.p50, s.p90, s.p99, s.p999, s.p9999, s.max, s.mean);
}

struct Target {
  std::string what;
  double value;
  double limit;
  bool met;
};

int run(int argc, char** argv) {
  Config cfg = parse_args(argc, argv);
  g_tight_spin = cfg.tight_spin;
  setup_signals();
  cfg.ns_per_tick =
      calibrate_ns_per_tick(std::chrono::milliseconds(cfg.quick ? 20 : 100));  // before forking
  make_root();

  SharedMemory control_mem(sizeof(Control));
  auto* ctl = new (control_mem.data()) Control{};
  preflight(cfg, ctl);

  const bool spin = cfg.round_trips_on;
  const bool futex = cfg.futex_on;
  const char* publish =
      cfg.publish == Publish::Claim
          ? "claim+commit"
          : (cfg.publish == Publish::Both ? "offer (and claim+commit rows)" : "offer");
  std::printf("shmbus-latency: CPUs A=%d B=%d", cfg.cpu_a, cfg.cpu_b);
  if (cfg.throughput) {
    if (cfg.cpu_c >= 0) {
      std::printf(" C=%d", cfg.cpu_c);
    } else {
      std::printf(" (2->1 throughput: both producers on CPU %d)", cfg.cpu_a);
    }
  }
  std::printf("%s\n", cfg.quick ? "  [--quick]" : "");
  std::printf("clock: %s, %.4f ns/tick (%.3f GHz); bus root %s\n", kClockName, cfg.ns_per_tick,
              1.0 / cfg.ns_per_tick, g_root.c_str());
  std::printf(
      "topics: block, frame_alignment 64, exclusive producer, 4 x 1 MiB segments; pinger "
      "publishes with %s; consumers call Consumer::poll(handler, 64) in a loop\n",
      publish);

  std::vector<RtResult> rts;
  std::vector<TputResult> tputs;
  std::vector<Target> targets;
  double line_p50 = 0;
  if (spin) {
    std::printf(
        "\nROUND TRIP, BUSY-SPIN (ns): A publishes on ping, B polls it and publishes it on "
        "pong, A polls it.\n%" PRIu64 " round trips per row after %" PRIu64
        " warm-up; all rows run in the same two processes, taking turns in blocks of %" PRIu64
        " (the first %" PRIu64
        " of a block not recorded).\np50/line: to the bare cache-line "
        "p50; p50/spsc: to the bare SPSC ring p50 of the same payload. ts: "
        "ProducerOptions::timestamps (default off).\n",
        cfg.round_trips, cfg.warmup, kBlock, kBlockSkip);
    std::vector<std::unique_ptr<Channel>> chans;
    chans.push_back(std::make_unique<LineChannel>());
    const bool claim = cfg.publish == Publish::Claim;
    for (std::uint32_t size : cfg.sizes) {
      chans.push_back(std::make_unique<SpscChannel>(size));
      chans.push_back(std::make_unique<ShmbusChannel>(
          claim ? "shmbus claim (ts off, default)" : "shmbus (ts off, default)",
          ShmbusRt{size, false, false, claim, 0}));
      chans.push_back(
          std::make_unique<ShmbusChannel>(claim ? "shmbus claim (ts on)" : "shmbus (ts on)",
                                          ShmbusRt{size, true, false, claim, 0}));
      if (cfg.publish == Publish::Both) {
        chans.push_back(std::make_unique<ShmbusChannel>("shmbus claim+commit (ts on)",
                                                        ShmbusRt{size, true, false, true, 0}));
        chans.push_back(std::make_unique<ShmbusChannel>("shmbus claim+commit (ts off)",
                                                        ShmbusRt{size, false, false, true, 0}));
      }
    }
    const std::vector<RtResult> res =
        run_rt_suite(cfg, ctl, "spin", chans, cfg.round_trips, cfg.warmup);
    chans.clear();  // unmaps the bare rings, removes the topics
    print_rt_header();
    double spsc_p50 = 0;
    const RtResult* spsc = nullptr;
    for (const RtResult& r : res) {
      if (r.name == "bare cache-line") line_p50 = r.s.p50;
      if (r.name == "bare SPSC ring") {
        spsc_p50 = r.s.p50;
        spsc = &r;
      }
      print_rt_row(r, line_p50, spsc_p50);
      rts.push_back(r);
      if (r.name.find("ts off, default") == std::string::npos || spsc == nullptr) continue;
      if (r.size == 32)
        targets.push_back({"round trip p50, 32 B, shmbus / bare cache-line (<= 1.5, aim 1.25)",
                           r.s.p50 / line_p50, 1.5, r.s.p50 / line_p50 <= 1.5});
      if (r.size == 64)
        targets.push_back({"round trip p50, 64 B, shmbus / bare SPSC (<= 1.0)",
                           r.s.p50 / spsc->s.p50, 1.0, r.s.p50 <= spsc->s.p50});
    }
  }
  if (futex && cfg.futex_round_trips > 0) {
    const std::uint64_t gapped = std::max<std::uint64_t>(1, cfg.futex_round_trips / 4);
    const std::uint64_t warm = std::min(cfg.warmup, cfg.futex_round_trips / 10);
    std::printf(
        "\nROUND TRIP, BLOCKING (futex; NOT comparable with the busy-spin figures) (ns): both "
        "consumers WaitStrategy::Futex, Consumer::poll_wait.\n"
        "back-to-back: %" PRIu64
        " round trips; the wait usually ends in poll_wait's spin phase, before sleeping.\n"
        "idle %" PRIu64 " us: %" PRIu64
        " round trips, each after A slept that long, so that B is asleep in the futex when the "
        "ping comes.\ncsw/rt: voluntary context switches per round trip (about 1 = slept once).\n",
        cfg.futex_round_trips, cfg.futex_gap_us, gapped);
    print_futex_header();
    for (std::uint32_t size : cfg.sizes) {
      if (cfg.wait == WaitMode::Both && size != cfg.sizes.front()) continue;
      std::vector<std::unique_ptr<Channel>> one;
      one.push_back(std::make_unique<ShmbusChannel>("futex back-to-back (ts off)",
                                                    ShmbusRt{size, false, true, false, 0}));
      for (const RtResult& r : run_rt_suite(cfg, ctl, "futex", one, cfg.futex_round_trips, warm)) {
        print_futex_row(r);
        rts.push_back(r);
      }
      if (cfg.futex_gap_us == 0) continue;
      one.clear();
      one.push_back(std::make_unique<ShmbusChannel>(
          format("futex idle %" PRIu64 " us (ts off)", cfg.futex_gap_us),
          ShmbusRt{size, false, true, false, cfg.futex_gap_us}));
      for (const RtResult& r :
           run_rt_suite(cfg, ctl, "futex", one, gapped, std::min<std::uint64_t>(warm, 100))) {
        print_futex_row(r);
        rts.push_back(r);
      }
    }
  }
  if (cfg.throughput) {
    std::printf(
        "\nONE-WAY THROUGHPUT: producer(s) on A%s -> consumer on B polling batches of %u and "
        "copying each payload out;\nan idle consumer pauses %u times before it looks again. "
        "Rounds per row: %u, the rows taking turns; msgs/s = all messages / all seconds.\n"
        "vs bare: msgs/s over the bare SPSC ring's. full/msg: producer retries after Full (the "
        "consumer is the bottleneck); idle/msg: consumer polls that found nothing (the "
        "producer is).\n",
        cfg.cpu_c >= 0 ? " and C" : " (2->1: both producers on A)", cfg.batch, cfg.idle_spins,
        cfg.rounds);
    print_tput_header();
    struct Spec {
      const char* name;
      int producers;  // 0: the bare SPSC ring
      bool timestamps;
    };
    const Spec specs[] = {{"bare SPSC ring", 0, false},
                          {"shmbus 1->1 (ts off, default)", 1, false},
                          {"shmbus 1->1 (ts on)", 1, true},
                          {"shmbus 2->1 (ts off, fetch_add)", 2, false}};
    for (std::uint32_t size : cfg.tput_sizes) {
      const std::uint64_t per_round =
          std::max<std::uint64_t>(2, messages_for(cfg, size) / cfg.rounds);
      std::vector<TputResult> acc;
      for (const Spec& sp : specs) acc.push_back({sp.name, size, std::max(1, sp.producers), 0, 0});
      for (std::uint32_t round = 0; round < cfg.rounds; ++round) {
        for (std::size_t i = 0; i < acc.size(); ++i) {
          const Spec& sp = specs[i];
          const TputResult r =
              sp.producers == 0
                  ? bare_spsc_tput(cfg, ctl, size, per_round)
                  : shmbus_tput(cfg, ctl, size, per_round, sp.producers, sp.timestamps, sp.name);
          acc[i].messages += r.messages;
          acc[i].seconds += r.seconds;
          acc[i].full += r.full;
          acc[i].empty += r.empty;
        }
      }
      const double bare = acc[0].msgs_per_s();
      for (const TputResult& r : acc) {
        print_tput_row(r, bare);
        tputs.push_back(r);
      }
      if (size == 64) {
        const double ratio = acc[1].msgs_per_s() / bare;
        targets.push_back(
            {"throughput 64 B 1->1, shmbus / bare SPSC (>= 0.5)", ratio, 0.5, ratio >= 0.5});
      }
    }
  }
  if (!targets.empty()) {
    std::printf("\nTARGETS (reported, not asserted; shmbus with default options)\n");
    for (const Target& t : targets)
      std::printf("  %-70s %6.2f  %s\n", t.what.c_str(), t.value, t.met ? "met" : "MISSED");
  }

  if (cfg.json) {
    std::string j = "{\"tool\":\"shmbus-latency\"";
    j += format(",\"cpus\":[%d,%d%s],\"quick\":%s,\"clock\":\"%s\",\"ns_per_tick\":%.6f", cfg.cpu_a,
                cfg.cpu_b, cfg.cpu_c >= 0 ? format(",%d", cfg.cpu_c).c_str() : "",
                cfg.quick ? "true" : "false", kClockName, cfg.ns_per_tick);
    j += format(",\"round_trips\":%" PRIu64 ",\"warmup\":%" PRIu64 ",\"publish\":\"%s\"",
                cfg.round_trips, cfg.warmup, publish);
    j += ",\"round_trip_ns\":[";
    for (std::size_t i = 0; i < rts.size(); ++i) {
      const RtResult& r = rts[i];
      j += format("%s{\"wait\":\"%s\",\"test\":\"%s\",\"payload\":%u,\"summary\":%s", i ? "," : "",
                  r.group.c_str(), json_escape(r.name).c_str(), r.size, json_summary(r.s).c_str());
      if (r.group == "futex")
        j += format(",\"switches_per_rt_a\":%.3f,\"switches_per_rt_b\":%.3f", r.switches_a,
                    r.switches_b);
      j += "}";
    }
    j += "],\"throughput\":[";
    for (std::size_t i = 0; i < tputs.size(); ++i) {
      const TputResult& r = tputs[i];
      j += format("%s{\"test\":\"%s\",\"payload\":%u,\"producers\":%d,\"messages\":%" PRIu64
                  ",\"seconds\":%.6f,\"msgs_per_s\":%.0f,\"gb_per_s\":%.4f,\"full_per_msg\":%.4f,"
                  "\"idle_per_msg\":%.5f}",
                  i ? "," : "", json_escape(r.name).c_str(), r.size, r.producers, r.messages,
                  r.seconds, r.msgs_per_s(), r.gb_per_s(), r.per_msg(r.full), r.per_msg(r.empty));
    }
    j += "],\"targets\":[";
    for (std::size_t i = 0; i < targets.size(); ++i)
      j += format("%s{\"what\":\"%s\",\"value\":%.4f,\"limit\":%.2f,\"met\":%s}", i ? "," : "",
                  json_escape(targets[i].what).c_str(), targets[i].value, targets[i].limit,
                  targets[i].met ? "true" : "false");
    j += "]}";
    std::printf("%s\n", j.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rc = 1;
  try {
    rc = run(argc, argv);
  } catch (const Failure& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "shmbus-latency: error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "shmbus-latency: error: %s\n", e.what());
  }
  remove_root();
  return rc;
}
