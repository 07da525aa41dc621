// shmbus bench — latency and throughput of shmbus on this machine, between
// two pinned processes, with the harness of bench/harness (the one
// shmbus-latency and shmbus-peers use).
//
//   round trip (rtt)   A publishes on a ping topic, B echoes on a pong topic;
//                      back-to-back, or at --rate with each round trip
//                      measured from its intended start
//   one-way            A publishes at --rate (or as fast as it can), each
//                      message carrying its intended send time; B records
//                      the latency from that time (coordinated omission
//                      corrected) and the throughput
//
// Topics are created for the run and deleted after it: through shmbusd when
// it runs for the bus, otherwise in a private bus root under /dev/shm.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bus_root.hpp"
#include "channel.hpp"
#include "client/attach.hpp"
#include "clock.hpp"
#include "commands.hpp"
#include "failure.hpp"
#include "hgrm.hpp"
#include "histogram.hpp"
#include "processes.hpp"
#include "shared_memory.hpp"
#include "shmbus_channel.hpp"

namespace shmbus::cli {
namespace {

using bench::Histogram;
using bench::Summary;

struct RootGuard {
  ~RootGuard() { bench::remove_root(); }
};

WaitStrategy wait_of(const std::string& w) {
  if (w == "yield") return WaitStrategy::SpinYield;
  if (w == "futex") return WaitStrategy::Futex;
  return WaitStrategy::BusySpin;
}

struct Row {
  std::uint32_t size = 0;
  Histogram hist;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::uint64_t lost = 0;
  double seconds = 0;
  std::string hgrm;  // the file written, if any
  double msgs_per_s() const { return seconds > 0 ? static_cast<double>(received) / seconds : 0; }
};

nlohmann::json summary_json(const Summary& s) {
  return {{"count", s.count}, {"min", s.min},      {"p50", s.p50}, {"p90", s.p90},  {"p99", s.p99},
          {"p99_9", s.p999},  {"p99_99", s.p9999}, {"max", s.max}, {"mean", s.mean}};
}

}  // namespace

void run_bench(const Context& ctx, const BenchOptions& o) {
  const bool rtt = o.mode == "rtt";
  std::uint64_t messages = o.messages;
  std::uint64_t warmup = o.warmup;
  if (o.quick) {
    messages = 2000;
    warmup = 200;
  }
  double seconds = 0;
  if (!o.duration.empty()) {
    std::string why;
    const auto d = parse_duration(o.duration, &why);
    if (!d) fail(kUsage, "--duration: " + why);
    seconds = static_cast<double>(d->count()) * 1e-9;
    messages = 0;
  }
  const int timeout_s = static_cast<int>(o.timeout);
  bench::set_tight_spin(false);
  bench::setup_signals();
  const double ns_per_tick = bench::calibrate_ns_per_tick(std::chrono::milliseconds(50));
  const double tick_step = bench::calibrate_tick_step();
  const std::uint64_t period = bench::period_ticks(o.rate, ns_per_tick);

  RootGuard root_guard;
  const std::string socket = client::daemon_socket(ctx.bus).value_or("");
  if (socket.empty()) bench::make_root("shmbus-bench");
  bench::BenchTopics topics(ctx.bus);
  TopicOptions topic = bench::latency_topic();
  topic.policy = o.policy == "overwrite" ? Policy::Overwrite : Policy::Block;
  topic.durable = o.durable;  // recorded by shmbusd's spiller while measured

  bench::SharedMemory errors_mem(sizeof(bench::ProcessErrors));
  auto* errors = new (errors_mem.data()) bench::ProcessErrors{};
  const bench::Cpus cpus{o.cpus[0], o.cpus[1]};
  bench::preflight(timeout_s, errors, {cpus.a, cpus.b});

  auto channel = [&](std::uint32_t size) {
    const std::string base = "bench." + std::to_string(::getpid()) + "." + std::to_string(size);
    topics.create(base + ".ping", topic);
    topics.create(base + ".pong", topic);  // one-way runs leave it empty
    return std::make_unique<bench::ShmbusChannel>(
        "shmbus", bench::ShmbusRt{ctx.bus, base + ".ping", base + ".pong", size, false,
                                  wait_of(o.wait), false, 0});
  };

  std::vector<Row> rows(o.sizes.size());
  if (rtt) {
    std::vector<std::unique_ptr<bench::Channel>> chans;
    for (std::uint32_t size : o.sizes) chans.push_back(channel(size));
    std::uint64_t round_trips = messages;
    if (round_trips == 0) {
      // A run for --duration: at --rate, rate x duration; back-to-back, sized
      // by a short probe of the same channels.
      if (o.rate > 0) {
        round_trips = static_cast<std::uint64_t>(o.rate * seconds);
      } else {
        const auto probe = bench::run_rt_suite({cpus, 2000, 200, 0, timeout_s}, errors, chans);
        double busy = 0;
        for (const auto& p : probe) busy += static_cast<double>(p.busy_ticks) * ns_per_tick * 1e-9;
        round_trips = static_cast<std::uint64_t>(seconds / busy * 2000.0);
      }
      round_trips = std::max<std::uint64_t>(round_trips, 1);
    }
    const auto samples =
        bench::run_rt_suite({cpus, round_trips, warmup, period, timeout_s}, errors, chans);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      rows[i].size = o.sizes[i];
      rows[i].hist = samples[i].hist;
      rows[i].sent = rows[i].received = samples[i].hist.count();
      rows[i].seconds = static_cast<double>(samples[i].busy_ticks) * ns_per_tick * 1e-9;
    }
  } else {
    for (std::size_t i = 0; i < rows.size(); ++i) {
      auto chan = channel(o.sizes[i]);
      bench::OneWaySpec spec{cpus, messages, seconds, warmup, period, ns_per_tick, timeout_s};
      const bench::OneWayResult r = bench::run_one_way(spec, errors, *chan);
      rows[i].size = o.sizes[i];
      rows[i].hist = r.hist;
      rows[i].sent = r.sent;
      rows[i].received = r.received;
      rows[i].lost = r.lost;
      rows[i].seconds = r.seconds;
      if (topic.policy == Policy::Block && (r.lost != 0 || r.received != r.sent))
        fail(kFailed, "one-way run of " + std::to_string(o.sizes[i]) + " B: sent " +
                          std::to_string(r.sent) + ", received " + std::to_string(r.received) +
                          " on a block topic");
    }
  }
  for (Row& r : rows) {
    if (o.hgrm.empty()) continue;
    r.hgrm = o.hgrm + "-" + o.mode + "-" + std::to_string(r.size) + "B.hgrm";
    bench::write_hgrm(r.hgrm, r.hist, ns_per_tick);
  }

  const std::string rate_text =
      o.rate > 0 ? bench::format("%.0f msgs/s offered", o.rate)
                 : (rtt ? std::string("back-to-back") : std::string("as fast as possible"));
  const std::string where =
      socket.empty() ? "private bus root " + bench::root() : "through shmbusd (" + socket + ")";
  if (o.json) {
    nlohmann::json j;
    j["tool"] = "shmbus bench";
    j["mode"] = o.mode;
    j["bus"] = ctx.bus;
    j["daemon_socket"] = socket.empty() ? nlohmann::json(nullptr) : nlohmann::json(socket);
    j["cpus"] = o.cpus;
    j["wait"] = o.wait;
    j["policy"] = o.policy;
    j["durable"] = o.durable;
    j["rate"] = o.rate;
    j["warmup"] = warmup;
    j["clock"] = bench::kClockName;
    j["ns_per_tick"] = ns_per_tick;
    j["tick_step"] = tick_step;
    j["results"] = nlohmann::json::array();
    for (const Row& r : rows) {
      nlohmann::json x;
      x["payload"] = r.size;
      x["sent"] = r.sent;
      x["received"] = r.received;
      x["lost"] = r.lost;
      x["seconds"] = r.seconds;
      x["msgs_per_s"] = r.msgs_per_s();
      x["latency_ns"] = summary_json(bench::summarize(r.hist, ns_per_tick, tick_step));
      x["hgrm"] = r.hgrm.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.hgrm);
      j["results"].push_back(x);
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("shmbus bench: %s, %s; CPUs %d,%d; wait %s; policy %s%s; %s\n",
              rtt ? "round trip (ping-pong)" : "one-way", rate_text.c_str(), cpus.a, cpus.b,
              o.wait.c_str(), o.policy.c_str(), o.durable ? ", durable (spilled)" : "",
              where.c_str());
  std::printf("latency in ns%s; warm-up %llu per size\n",
              o.rate > 0 ? ", from each message's intended send time" : "",
              static_cast<unsigned long long>(warmup));
  std::printf("%8s %10s %8s %8s %8s %8s %8s %8s %9s %12s %8s\n", "payload", "count", "min", "p50",
              "p90", "p99", "p99.9", "p99.99", "max", rtt ? "rt/s" : "msgs/s", "lost");
  for (const Row& r : rows) {
    const Summary s = bench::summarize(r.hist, ns_per_tick, tick_step);
    std::printf("%8u %10llu %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f %9.0f %12.0f %8llu\n", r.size,
                static_cast<unsigned long long>(r.received), s.min, s.p50, s.p90, s.p99, s.p999,
                s.p9999, s.max, r.msgs_per_s(), static_cast<unsigned long long>(r.lost));
  }
  for (const Row& r : rows)
    if (!r.hgrm.empty()) std::printf("wrote %s\n", r.hgrm.c_str());
}

}  // namespace shmbus::cli
