// shmbus-latency — round-trip latency and one-way throughput of shmbus between
// real, separately pinned processes, measured in the same run as the bare
// shared-memory mechanisms it is built from:
//
//   bare cache-line ping-pong   one 64-byte line per direction, a counter stored and awaited
//   bare SPSC ring              slots of {sequence word, payload} in 64-byte lines, per direction
//   bare index ring             the classic SPSC ring: payload-only slots (64 B slots for 64 B),
//                               a producer and a consumer index in lines of their own
//   shmbus                      Topic "ping" and "pong" (block, frame_alignment 64, exclusive)
//
// Round trips: one pair of forked processes (A pings and measures, B echoes)
// runs every mechanism, the mechanisms taking turns in blocks of round trips,
// so that the host's drift (large on this VM) lands on all of them alike.
// Samples go into a log-linear histogram (64 sub-buckets per power of two:
// < 1.6% bucket width); percentiles are interpolated within a bucket, or
// within one clock step where the clock advances several ticks at a time
// (AMD's TSC: 10 ns), so that they are not rounded to the step.
// Throughput: fresh processes per row and round (a third one for the second
// producer of the 2->1 test), the rows taking turns round by round.
// Every process is pinned to its CPU; topics live in a private bus root under
// /dev/shm, removed at the end, also on error (and, after a SIGKILL, by the
// next run). Run with --help for the options.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bare.hpp"
#include "bus_root.hpp"
#include "channel.hpp"
#include "clock.hpp"
#include "failure.hpp"
#include "histogram.hpp"
#include "processes.hpp"
#include "shared_memory.hpp"
#include "shmbus/shmbus.hpp"
#include "shmbus_channel.hpp"

namespace {

using namespace shmbus::bench;

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
  double tick_step = 1;  // calibrate_tick_step()
};

constexpr const char* kUsage = R"(usage: shmbus-latency [options]

Round-trip latency and one-way throughput of shmbus between two pinned
processes, next to a bare cache-line ping-pong and two bare SPSC rings (slots
with a sequence word; the classic ring with indices) measured in the same
run. Topics live in a private bus root under /dev/shm (SHMBUS_SHM_ROOT),
removed at exit.

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

// Written by the children, read by the parent after they exit.
struct Control {
  ProcessErrors errors;
  std::uint64_t messages;
  double seconds;
  std::uint64_t full[kMaxProcs];  // throughput: a producer's retries after Full
  std::uint64_t empty;            // throughput: the consumer's empty polls after the first message
};

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
  run_processes(cfg.timeout_s, &ctl->errors, {prod, cons});
  return {"bare SPSC ring", size, 1, ctl->messages, ctl->seconds, ctl->full[0], ctl->empty};
}

TputResult shmbus_tput(const Config& cfg, Control* ctl, std::uint32_t size, std::uint64_t n,
                       int producers, shmbus::ProducerOptions po, const std::string& name) {
  po.wait = shmbus::WaitStrategy::BusySpin;
  static int serial = 0;
  const std::string bus = format("tp%d", serial++);
  BenchTopics topics(bus);
  shmbus::TopicOptions o = latency_topic();
  o.exclusive_producer = producers == 1;
  topics.create("data", o);
  const std::uint64_t per = n / static_cast<std::uint64_t>(producers);
  const std::uint64_t total = per * static_cast<std::uint64_t>(producers);
  std::vector<Role> roles;
  for (int k = 0; k < producers; ++k) {
    const int cpu = k == 0 ? cfg.cpu_a : (cfg.cpu_c >= 0 ? cfg.cpu_c : cfg.cpu_a);
    roles.push_back({k == 0 ? "A" : "C", cpu, [&, k](const std::function<void()>& ready) {
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
  run_processes(cfg.timeout_s, &ctl->errors, roles);
  std::uint64_t full = 0;
  for (std::uint64_t f : ctl->full) full += f;
  return {name, size, producers, ctl->messages, ctl->seconds, full, ctl->empty};
}

// ---------------------------------------------------------------------------
// Round trips: the harness's suites (bench/harness/channel.hpp), summarized.

// A shmbus channel as `t` says, on two fresh topics of `topics`.
std::unique_ptr<Channel> shmbus_channel(BenchTopics& topics, std::string name, ShmbusRt t) {
  static int serial = 0;
  const std::string base = format("rt%d", serial++);
  t.bus = topics.bus();
  t.ping_topic = base + ".ping";
  t.pong_topic = base + ".pong";
  topics.create(t.ping_topic, latency_topic());
  topics.create(t.pong_topic, latency_topic());
  return std::make_unique<ShmbusChannel>(std::move(name), std::move(t));
}

std::vector<RtResult> rt_suite(const Config& cfg, Control* ctl, const char* group,
                               std::vector<std::unique_ptr<Channel>>& chans,
                               std::uint64_t round_trips, std::uint64_t warmup) {
  const RtSpec spec{{cfg.cpu_a, cfg.cpu_b}, round_trips, warmup, 0, cfg.timeout_s};
  const std::vector<RtSample> samples = run_rt_suite(spec, &ctl->errors, chans);
  std::vector<RtResult> out;
  for (std::size_t c = 0; c < chans.size(); ++c) {
    RtResult r{group, chans[c]->name(), chans[c]->size(),
               summarize(samples[c].hist, cfg.ns_per_tick, cfg.tick_step)};
    if (chans[c]->blocking()) {
      r.switches_a = static_cast<double>(samples[c].switches_a) / static_cast<double>(round_trips);
      r.switches_b = static_cast<double>(samples[c].switches_b) /
                     static_cast<double>(echoed_round_trips(round_trips, chans.size()));
    }
    out.push_back(std::move(r));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Output.

std::string size_text(std::uint32_t s) {
  if (s >= 1024 && s % 1024 == 0) return std::to_string(s / 1024) + " KiB";
  return std::to_string(s) + " B";
}

void print_rt_header() {
  std::printf("  %-36s %8s %8s %8s %8s %8s %8s %8s %9s %9s %9s\n", "test", "payload", "min", "p50",
              "p90", "p99", "p99.9", "p99.99", "max", "p50/line", "p50/spsc");
}

void print_rt_row(const RtResult& r, double line_p50, double spsc_p50) {
  const Summary& s = r.s;
  std::string l = line_p50 > 0 ? format("%.2fx", s.p50 / line_p50) : "";
  std::string p = spsc_p50 > 0 ? format("%.2fx", s.p50 / spsc_p50) : "";
  std::printf("  %-36s %8s %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %9.0f %9s %9s\n", r.name.c_str(),
              r.name == "bare cache-line" ? "-" : size_text(r.size).c_str(), s.min, s.p50, s.p90,
              s.p99, s.p999, s.p9999, s.max, l.c_str(), p.c_str());
  std::fflush(stdout);
}

void print_futex_header() {
  std::printf("  %-36s %8s %8s %8s %8s %8s %8s %8s %9s %9s %9s\n", "test", "payload", "min", "p50",
              "p90", "p99", "p99.9", "p99.99", "max", "A csw/rt", "B csw/rt");
}

void print_futex_row(const RtResult& r) {
  const Summary& s = r.s;
  std::printf("  %-36s %8s %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %9.0f %9.2f %9.2f\n", r.name.c_str(),
              size_text(r.size).c_str(), s.min, s.p50, s.p90, s.p99, s.p999, s.p9999, s.max,
              r.switches_a, r.switches_b);
  std::fflush(stdout);
}

void print_tput_header() {
  std::printf("  %-36s %8s %11s %12s %9s %10s %10s %10s\n", "test", "payload", "messages", "msgs/s",
              "GB/s", "vs bare", "full/msg", "idle/msg");
}

void print_tput_row(const TputResult& r, double bare) {
  std::string ratio = bare > 0 ? format("%.2f", r.msgs_per_s() / bare) : "";
  std::printf("  %-36s %8s %11" PRIu64 " %12.0f %9.2f %10s %10.3f %10.4f\n", r.name.c_str(),
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
  set_tight_spin(cfg.tight_spin);
  setup_signals();
  cfg.ns_per_tick =
      calibrate_ns_per_tick(std::chrono::milliseconds(cfg.quick ? 20 : 100));  // before forking
  cfg.tick_step = calibrate_tick_step();
  make_root("shmbus-latency");

  SharedMemory control_mem(sizeof(Control));
  auto* ctl = new (control_mem.data()) Control{};
  std::vector<int> cpus{cfg.cpu_a, cfg.cpu_b};
  if (cfg.cpu_c >= 0) cpus.push_back(cfg.cpu_c);
  preflight(cfg.timeout_s, &ctl->errors, cpus);

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
  std::printf(
      "clock: %s, %.4f ns/tick (%.3f GHz), advancing %.2f ticks (%.1f ns) at a time%s; bus root "
      "%s\n",
      kClockName, cfg.ns_per_tick, 1.0 / cfg.ns_per_tick, cfg.tick_step,
      cfg.tick_step * cfg.ns_per_tick,
      cfg.tick_step > 1 ? " (percentiles spread each value over one step)" : "", root().c_str());
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
        "ProducerOptions::timestamps (default on).\n",
        cfg.round_trips, cfg.warmup, kBlock, kBlockSkip);
    BenchTopics topics("latency");
    std::vector<std::unique_ptr<Channel>> chans;
    chans.push_back(std::make_unique<LineChannel>());
    const bool claim = cfg.publish == Publish::Claim;
    for (std::uint32_t size : cfg.sizes) {
      chans.push_back(std::make_unique<SpscChannel<BareRing>>(size));
      chans.push_back(std::make_unique<SpscChannel<IndexRing>>(size));
      const std::string kind = claim ? "shmbus claim" : "shmbus";
      chans.push_back(
          shmbus_channel(topics, kind + " (default: ts on)", {.size = size, .claim = claim}));
      chans.push_back(shmbus_channel(topics, kind + " (ts off)",
                                     {.size = size, .timestamps = false, .claim = claim}));
      chans.push_back(shmbus_channel(topics, kind + " (pretouch)",
                                     {.size = size, .claim = claim, .pretouch = true}));
      chans.push_back(shmbus_channel(topics, kind + " (echo sized by frame)",
                                     {.size = size, .claim = claim, .echo_frame_length = true}));
      if (cfg.publish == Publish::Both) {
        chans.push_back(
            shmbus_channel(topics, "shmbus claim+commit (ts on)", {.size = size, .claim = true}));
        chans.push_back(shmbus_channel(topics, "shmbus claim+commit (ts off)",
                                       {.size = size, .timestamps = false, .claim = true}));
      }
    }
    const std::vector<RtResult> res =
        rt_suite(cfg, ctl, "spin", chans, cfg.round_trips, cfg.warmup);
    chans.clear();  // unmaps the bare rings
    print_rt_header();
    double spsc_p50 = 0, index_p50 = 0;
    for (const RtResult& r : res) {
      if (r.name == "bare cache-line") line_p50 = r.s.p50;
      if (r.name == "bare SPSC ring") spsc_p50 = r.s.p50;
      if (r.name == "bare index ring") index_p50 = r.s.p50;
      print_rt_row(r, line_p50, spsc_p50);
      rts.push_back(r);
      const double p50 = r.s.p50;
      if (r.size == 64 && index_p50 > 0 && r.name.find("(pretouch)") != std::string::npos)
        targets.push_back(
            {"round trip p50, 64 B, shmbus with pretouch_next_frame / bare index ring (<= 1.0)",
             p50 / index_p50, 1.0, p50 <= index_p50});
      if (r.name.find("(default") == std::string::npos || spsc_p50 == 0) continue;
      if (r.size == 32)
        targets.push_back({"round trip p50, 32 B, shmbus / bare cache-line (<= 1.5, aim 1.25)",
                           p50 / line_p50, 1.5, p50 / line_p50 <= 1.5});
      if (r.size == 64 && index_p50 > 0)
        targets.push_back({"round trip p50, 64 B, shmbus / bare index ring, 64 B slots (<= 1.0)",
                           p50 / index_p50, 1.0, p50 <= index_p50});
      if (r.size == 64)
        targets.push_back({"round trip p50, 64 B, shmbus / bare SPSC ring (stricter; <= 1.0)",
                           p50 / spsc_p50, 1.0, p50 <= spsc_p50});
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
      BenchTopics topics("latency");
      std::vector<std::unique_ptr<Channel>> one;
      one.push_back(shmbus_channel(topics, "futex back-to-back",
                                   {.size = size, .wait = shmbus::WaitStrategy::Futex}));
      for (const RtResult& r : rt_suite(cfg, ctl, "futex", one, cfg.futex_round_trips, warm)) {
        print_futex_row(r);
        rts.push_back(r);
      }
      if (cfg.futex_gap_us == 0) continue;
      one.clear();
      one.push_back(shmbus_channel(
          topics, format("futex idle %" PRIu64 " us", cfg.futex_gap_us),
          {.size = size, .wait = shmbus::WaitStrategy::Futex, .gap_us = cfg.futex_gap_us}));
      for (const RtResult& r :
           rt_suite(cfg, ctl, "futex", one, gapped, std::min<std::uint64_t>(warm, 100))) {
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
      shmbus::ProducerOptions options;
    };
    const Spec specs[] = {{"bare SPSC ring", 0, {}},
                          {"shmbus 1->1 (default: ts on)", 1, {}},
                          {"shmbus 1->1 (ts off)", 1, {.timestamps = false}},
                          {"shmbus 1->1 (full fence)", 1, {.light_fence = false}},
                          {"shmbus 1->1 (pretouch)", 1, {.pretouch_next_frame = true}},
                          {"shmbus 2->1 (fetch_add)", 2, {}}};
    for (std::uint32_t size : cfg.tput_sizes) {
      const std::uint64_t per_round =
          std::max<std::uint64_t>(2, messages_for(cfg, size) / cfg.rounds);
      std::vector<TputResult> acc;
      for (const Spec& sp : specs) acc.push_back({sp.name, size, std::max(1, sp.producers), 0, 0});
      for (std::uint32_t round = 0; round < cfg.rounds; ++round) {
        for (std::size_t i = 0; i < acc.size(); ++i) {
          const Spec& sp = specs[i];
          const TputResult r = sp.producers == 0 ? bare_spsc_tput(cfg, ctl, size, per_round)
                                                 : shmbus_tput(cfg, ctl, size, per_round,
                                                               sp.producers, sp.options, sp.name);
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
    std::printf("\nTARGETS (reported, not asserted; shmbus with default options unless named)\n");
    for (const Target& t : targets)
      std::printf("  %-82s %6.2f  %s\n", t.what.c_str(), t.value, t.met ? "met" : "MISSED");
  }

  if (cfg.json) {
    std::string j = "{\"tool\":\"shmbus-latency\"";
    j += format(
        ",\"cpus\":[%d,%d%s],\"quick\":%s,\"clock\":\"%s\",\"ns_per_tick\":%.6f,\"tick_step\":%.3f",
        cfg.cpu_a, cfg.cpu_b, cfg.cpu_c >= 0 ? format(",%d", cfg.cpu_c).c_str() : "",
        cfg.quick ? "true" : "false", kClockName, cfg.ns_per_tick, cfg.tick_step);
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
