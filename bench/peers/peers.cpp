// shmbus-peers — shmbus next to other ways of moving a message between two
// processes on one machine, in one run, with the harness of shmbus-latency
// and `shmbus bench` (bench/harness): the same two pinned processes, the same
// payload sizes, round trips taking turns in blocks over every transport, and
// one-way throughput with fresh processes per row.
//
// The references: the bare cache-line ping-pong (the physical floor) and the
// bare SPSC ring (the least a shared-memory queue does). The peers: see
// peers.hpp. bench/peers/run builds this, starts the servers it needs
// (RouDi, redis-server) and stops them; run it with --help for the options.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bare.hpp"
#include "bus_root.hpp"
#include "channel.hpp"
#include "clock.hpp"
#include "failure.hpp"
#include "hgrm.hpp"
#include "histogram.hpp"
#include "peers.hpp"
#include "processes.hpp"
#include "shared_memory.hpp"
#include "shmbus_channel.hpp"

namespace {

using namespace shmbus::bench;
using namespace shmbus::bench::peers;

struct Options {
  std::vector<int> cpus{0, 1};
  std::vector<std::uint32_t> sizes{64, 1024};
  std::uint64_t round_trips = 50'000;
  std::uint64_t warmup = 5'000;
  double tput_seconds = 1.0;
  std::string redis;     // unix socket of a running redis-server; empty: skip
  bool iceoryx = false;  // RouDi is running
  std::vector<std::string> skip;
  std::string work_dir = "/tmp";
  std::string csv;
  std::string hgrm_dir;
  bool quick = false;
  int timeout_s = 300;
};

struct Peer {
  std::string name;  // as the channel names itself
  std::function<std::unique_ptr<Channel>(std::uint32_t)> make;
  const char* waits;
};

struct Row {
  std::string name;
  std::uint32_t size = 0;
  Summary rt;
  Histogram hist;
  double msgs_per_s = 0;
  std::uint64_t lost = 0;
  const char* waits = "";
};

std::string slug(const std::string& s) {
  std::string o;
  for (char c : s) o += (c == ' ' || c == '/') ? '-' : c;
  return o;
}

double ratio(double a, double b) {
  return b > 0 ? a / b : 0;
}

int run(int argc, char** argv) {
  Options o;
  CLI::App app(
      "shmbus-peers: round trips and one-way throughput of shmbus and other transports "
      "between two pinned processes, in one run",
      "shmbus-peers");
  app.add_option("--cpus", o.cpus, "CPUs of process A and B")
      ->delimiter(',')
      ->expected(2)
      ->capture_default_str();
  app.add_option("--sizes", o.sizes, "Payload sizes in bytes")
      ->delimiter(',')
      ->check(CLI::Range(16, 65536))
      ->capture_default_str();
  app.add_option("--round-trips", o.round_trips, "Measured round trips per transport and size")
      ->check(CLI::Range(1, 100'000'000))
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "Round trips per transport before measuring")
      ->capture_default_str();
  app.add_option("--tput-seconds", o.tput_seconds, "One-way throughput run per row, seconds")
      ->check(CLI::Range(0.01, 600.0))
      ->capture_default_str();
  app.add_option("--redis", o.redis, "Unix socket of a redis-server to use (else: skip redis)");
  app.add_flag("--iceoryx", o.iceoryx, "RouDi is running: include iceoryx");
  app.add_option("--skip", o.skip,
                 "Transports to leave out (uds, boost-mq, zeromq, redis, iceoryx)")
      ->delimiter(',');
  app.add_option("--work-dir", o.work_dir, "Where ipc:// socket files go")->capture_default_str();
  app.add_option("--csv", o.csv, "Write the table as CSV to this file");
  app.add_option("--hgrm-dir", o.hgrm_dir, "Write each row's round-trip distribution (.hgrm) here");
  app.add_flag("--quick", o.quick, "Smoke mode: 1000 round trips, 0.05 s of throughput per row");
  app.add_option("--timeout", o.timeout_s, "Give up on a test after this many seconds")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (o.quick) {
    o.round_trips = 1000;
    o.warmup = 100;
    o.tput_seconds = 0.05;
  }
  auto skipped = [&](const char* key) {
    return std::find(o.skip.begin(), o.skip.end(), key) != o.skip.end();
  };

  setup_signals();
  const double ns_per_tick = calibrate_ns_per_tick(std::chrono::milliseconds(o.quick ? 20 : 100));
  const double tick_step = calibrate_tick_step();
  make_root("shmbus-peers");
  SharedMemory errors_mem(sizeof(ProcessErrors));
  auto* errors = new (errors_mem.data()) ProcessErrors{};
  const Cpus cpus{o.cpus[0], o.cpus[1]};
  preflight(o.timeout_s, errors, {cpus.a, cpus.b});
  BenchTopics topics("peers");

  std::vector<Peer> peers;
  peers.push_back({"bare SPSC ring",
                   [](std::uint32_t s) { return std::make_unique<SpscChannel<BareRing>>(s); },
                   "spin"});
  peers.push_back({"shmbus",
                   [&](std::uint32_t s) -> std::unique_ptr<Channel> {
                     static int serial = 0;
                     const std::string base = format("p%d", serial++);
                     topics.create(base + ".ping", latency_topic());
                     topics.create(base + ".pong", latency_topic());
                     return std::make_unique<ShmbusChannel>(
                         "shmbus", ShmbusRt{topics.bus(), base + ".ping", base + ".pong", s});
                   },
                   "spin"});
  std::vector<std::string> notes;
  auto add = [&](const char* key, bool built, bool ready, const char* why, Peer p) {
    if (skipped(key)) {
      notes.push_back(format("%s: skipped (--skip)", key));
    } else if (!built) {
      notes.push_back(format("%s: skipped, not built (%s)", key, why));
    } else if (!ready) {
      notes.push_back(format("%s: skipped (%s)", key, why));
    } else {
      peers.push_back(std::move(p));
    }
  };
#ifdef SHMBUS_PEER_ICEORYX
  add("iceoryx", true, o.iceoryx, "no --iceoryx: RouDi not running",
      {"iceoryx", make_iceoryx, "spin"});
#else
  add("iceoryx", false, false, "libiceoryx-posh-dev not found", {});
#endif
  add("uds", true, true, "", {"unix socket", make_uds, "block"});
#ifdef SHMBUS_PEER_BOOST
  add("boost-mq", true, true, "", {"boost message_queue", make_boost_mq, "block"});
#else
  add("boost-mq", false, false, "libboost-dev not found", {});
#endif
#ifdef SHMBUS_PEER_ZMQ
  add("zeromq", true, true, "",
      {"zeromq ipc", [&](std::uint32_t s) { return make_zeromq(s, o.work_dir); }, "block"});
#else
  add("zeromq", false, false, "libzmq3-dev not found", {});
#endif
#ifdef SHMBUS_PEER_REDIS
  add("redis", true, !o.redis.empty(), "no --redis socket",
      {"redis streams", [&](std::uint32_t s) { return make_redis(s, o.redis); }, "block"});
#else
  add("redis", false, false, "libhiredis-dev not found", {});
#endif

  std::printf(
      "shmbus-peers: CPUs A=%d B=%d; %llu round trips per transport and size after %llu "
      "warm-up, taking turns in blocks of %llu; throughput %.2f s per row\n",
      cpus.a, cpus.b, static_cast<unsigned long long>(o.round_trips),
      static_cast<unsigned long long>(o.warmup), static_cast<unsigned long long>(kBlock),
      o.tput_seconds);
  for (const std::string& n : notes) std::printf("  %s\n", n.c_str());
  std::fflush(stdout);

  // Round trips: every transport and size in one pair of processes.
  std::vector<Row> rows;
  {
    std::vector<std::unique_ptr<Channel>> chans;
    std::vector<const char*> waits;
    chans.push_back(std::make_unique<LineChannel>());
    waits.push_back("spin");
    for (std::uint32_t size : o.sizes)
      for (const Peer& p : peers) {
        chans.push_back(p.make(size));
        waits.push_back(p.waits);
      }
    const auto samples =
        run_rt_suite({cpus, o.round_trips, o.warmup, 0, o.timeout_s}, errors, chans);
    for (std::size_t c = 0; c < chans.size(); ++c) {
      Row r;
      r.name = chans[c]->name();
      r.size = chans[c]->size();
      r.rt = summarize(samples[c].hist, ns_per_tick, tick_step);
      r.hist = samples[c].hist;
      r.waits = waits[c];
      rows.push_back(std::move(r));
    }
  }
  // Throughput: one-way, fresh processes and channels per row.
  std::size_t at = 1;
  for (std::uint32_t size : o.sizes)
    for (const Peer& p : peers) {
      auto chan = p.make(size);
      const OneWaySpec spec{cpus, 0, o.tput_seconds, 1000, 0, ns_per_tick, o.timeout_s};
      const OneWayResult r = run_one_way(spec, errors, *chan);
      if (r.received == 0) fail(p.name + ": no message arrived in the throughput run");
      rows[at].msgs_per_s = r.msgs_per_s();
      rows[at].lost = r.lost;
      ++at;
    }

  // Output: ratios to the bare SPSC ring and to shmbus of the same size.
  auto find = [&](const std::string& name, std::uint32_t size) -> const Row* {
    for (const Row& r : rows)
      if (r.name == name && r.size == size) return &r;
    return nullptr;
  };
  std::printf(
      "\nROUND TRIP (us) and ONE-WAY THROUGHPUT; ratios: p50 and msgs/s over the bare SPSC "
      "ring's and shmbus's of the same payload (bare cache-line: payload 8 B, no queue)\n");
  std::printf("%-20s %7s %5s %8s %8s %8s %8s %9s %7s %7s %11s %7s %7s\n", "transport", "payload",
              "waits", "p50", "p90", "p99", "p99.9", "max", "/bare", "/shmbus", "msgs/s", "/bare",
              "/shmbus");
  std::FILE* csv = nullptr;
  if (!o.csv.empty()) {
    csv = std::fopen(o.csv.c_str(), "w");
    if (csv == nullptr) fail("cannot write " + o.csv);
    std::fprintf(csv,
                 "transport,payload,waits,round_trips,min_ns,p50_ns,p90_ns,p99_ns,p99_9_ns,"
                 "p99_99_ns,max_ns,p50_vs_bare,p50_vs_shmbus,msgs_per_s,tput_vs_bare,"
                 "tput_vs_shmbus,lost\n");
  }
  for (const Row& r : rows) {
    const Row* bare = find("bare SPSC ring", r.size);
    const Row* shm = find("shmbus", r.size);
    const double lb = bare ? ratio(r.rt.p50, bare->rt.p50) : 0;
    const double ls = shm ? ratio(r.rt.p50, shm->rt.p50) : 0;
    const double tb = bare ? ratio(r.msgs_per_s, bare->msgs_per_s) : 0;
    const double ts = shm ? ratio(r.msgs_per_s, shm->msgs_per_s) : 0;
    auto x = [](double v) { return v > 0 ? format("%.2fx", v) : std::string("-"); };
    std::printf("%-20s %7u %5s %8.2f %8.2f %8.2f %8.2f %9.1f %7s %7s %11s %7s %7s\n",
                r.name.c_str(), r.size, r.waits, r.rt.p50 / 1e3, r.rt.p90 / 1e3, r.rt.p99 / 1e3,
                r.rt.p999 / 1e3, r.rt.max / 1e3, x(lb).c_str(), x(ls).c_str(),
                r.msgs_per_s > 0 ? format("%.0f", r.msgs_per_s).c_str() : "-", x(tb).c_str(),
                x(ts).c_str());
    if (csv != nullptr)
      std::fprintf(
          csv, "%s,%u,%s,%llu,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.4f,%.4f,%.0f,%.4f,%.4f,%llu\n",
          r.name.c_str(), r.size, r.waits, static_cast<unsigned long long>(r.rt.count), r.rt.min,
          r.rt.p50, r.rt.p90, r.rt.p99, r.rt.p999, r.rt.p9999, r.rt.max, lb, ls, r.msgs_per_s, tb,
          ts, static_cast<unsigned long long>(r.lost));
    if (!o.hgrm_dir.empty())
      write_hgrm(format("%s/%s-%uB.hgrm", o.hgrm_dir.c_str(), slug(r.name).c_str(), r.size), r.hist,
                 ns_per_tick);
  }
  if (csv != nullptr && std::fclose(csv) != 0) fail("cannot write " + o.csv);
  for (const Row& r : rows)
    if (r.lost != 0)
      std::printf("note: %s %u B lost %llu messages in the throughput run\n", r.name.c_str(),
                  r.size, static_cast<unsigned long long>(r.lost));
  std::printf(
      "waits: spin = busy-polls (pinned, burns its CPU); block = sleeps in the kernel or "
      "on a process-shared condition variable until a message comes\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rc = 1;
  try {
    rc = run(argc, argv);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "shmbus-peers: error: %s\n", e.what());
  }
  remove_root();
  return rc;
}
