#include "channel.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <new>

#include "clock.hpp"
#include "failure.hpp"
#include "shared_memory.hpp"

namespace shmbus::bench {

std::uint64_t voluntary_switches() noexcept {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<std::uint64_t>(u.ru_nvcsw);
}

void Channel::ping(Histogram* h, std::uint64_t n, std::uint64_t skip, std::uint64_t period_ticks) {
  std::vector<std::byte> msg(size_);
  std::uint64_t got = 0;
  auto on = [&](Bytes b) { std::memcpy(&got, b.data(), 8); };
  Pace pace(period_ticks);
  for (std::uint64_t k = 0; k < n; ++k) {
    const std::uint64_t s = ++seq_;
    std::memcpy(msg.data(), &s, 8);
    const bool measured = h != nullptr && k >= skip;
    const std::uint64_t s0 = blocking() && measured ? voluntary_switches() : 0;
    const std::uint64_t t0 = pace.start();
    send(Direction::Ping, msg);
    while (receive(Direction::Pong, on, 1) == 0) relax();
    const std::uint64_t t1 = ticks();
    if (got != s) fail(format("%s: echo %" PRIu64 " for %" PRIu64, name_.c_str(), got, s));
    if (measured) {
      h->record(t1 - t0);
      if (blocking()) switches += voluntary_switches() - s0;
    }
  }
}

void Channel::echo(std::uint64_t n, bool measured) {
  auto on = [&](Bytes b) { send(Direction::Pong, b); };
  const std::uint64_t s0 = blocking() && measured ? voluntary_switches() : 0;
  for (std::uint64_t done = 0; done < n;) {
    const std::uint32_t k = receive(Direction::Ping, on, 64);
    if (k == 0) relax();
    done += k;
  }
  if (blocking() && measured) switches += voluntary_switches() - s0;
}

void Channel::send(Direction, Bytes) {
  fail(name_ + " has no one-way mode");
}

std::uint32_t Channel::receive(Direction, Receiver, std::uint32_t) {
  fail(name_ + " has no one-way mode");
}

std::uint64_t echoed_round_trips(std::uint64_t round_trips, std::size_t channels) {
  if (channels <= 1) return round_trips;
  const std::uint64_t per_turn = kBlock - kBlockSkip;
  return round_trips + kBlockSkip * ((round_trips + per_turn - 1) / per_turn);
}

std::vector<RtSample> run_rt_suite(const RtSpec& spec, ProcessErrors* errors,
                                   std::vector<std::unique_ptr<Channel>>& chans) {
  SharedMemory mem(chans.size() * sizeof(RtSample));
  auto* shared = new (mem.data()) RtSample[chans.size()]{};
  const bool turns = chans.size() > 1;
  const std::uint64_t skip = turns ? kBlockSkip : 0;
  const std::uint64_t per_turn = turns ? kBlock - kBlockSkip : spec.round_trips;
  // The schedule, identical in both processes: (channel, round trips) per turn.
  auto schedule = [&](auto&& turn) {
    std::vector<std::uint64_t> left(chans.size(), spec.round_trips);
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
  Role a{"A", spec.cpus.a, [&](const std::function<void()>& ready) {
           std::vector<std::unique_ptr<Histogram>> hists;
           for (auto& ch : chans) {
             ch->open_ping();
             hists.push_back(std::make_unique<Histogram>());
           }
           ready();
           for (auto& ch : chans)
             if (spec.warmup > 0) ch->ping(nullptr, spec.warmup, 0, spec.period_ticks);
           for (auto& ch : chans) ch->switches = 0;
           std::vector<std::uint64_t> busy(chans.size());
           schedule([&](std::size_t c, std::uint64_t n) {
             const std::uint64_t t0 = ticks();
             chans[c]->ping(hists[c].get(), n + skip, skip, spec.period_ticks);
             busy[c] += ticks() - t0;
           });
           for (std::size_t c = 0; c < chans.size(); ++c) {
             shared[c].hist = *hists[c];
             shared[c].switches_a = chans[c]->switches;
             shared[c].busy_ticks = busy[c];
             chans[c]->close();
           }
         }};
  Role b{"B", spec.cpus.b, [&](const std::function<void()>& ready) {
           for (auto& ch : chans) ch->open_echo();
           ready();
           for (auto& ch : chans)
             if (spec.warmup > 0) ch->echo(spec.warmup, false);
           for (auto& ch : chans) ch->switches = 0;
           schedule([&](std::size_t c, std::uint64_t n) { chans[c]->echo(n + skip, true); });
           for (std::size_t c = 0; c < chans.size(); ++c) {
             shared[c].switches_b = chans[c]->switches;
             chans[c]->close();
           }
         }};
  run_processes(spec.timeout_s, errors, {a, b});
  std::vector<RtSample> out(shared, shared + chans.size());
  for (std::size_t c = 0; c < chans.size(); ++c) shared[c].~RtSample();
  return out;
}

namespace {

struct OneWayShared {
  OneWayResult result;
  std::uint64_t first_due;
  std::uint64_t last_receive;
};

}  // namespace

OneWayResult run_one_way(const OneWaySpec& spec, ProcessErrors* errors, Channel& chan) {
  if (chan.size() < 16) fail(chan.name() + ": one-way messages are at least 16 bytes");
  SharedMemory mem(sizeof(OneWayShared));
  auto* shared = new (mem.data()) OneWayShared{};
  const auto run_ticks =
      static_cast<std::uint64_t>(spec.seconds * 1e9 / std::max(spec.ns_per_tick, 1e-6));
  Role a{"A", spec.cpus.a, [&](const std::function<void()>& ready) {
           chan.open_ping();
           std::vector<std::byte> msg(chan.size(), std::byte{0x5a});
           ready();
           Pace pace(spec.period_ticks);
           std::uint64_t i = 0, end = 0;
           for (;; ++i) {
             if (spec.messages != 0 ? i == spec.warmup + spec.messages
                                    : i > spec.warmup && ticks() >= end)
               break;
             const std::uint64_t due = pace.start();
             if (i == spec.warmup) end = due + run_ticks;
             std::memcpy(msg.data(), &i, 8);
             std::memcpy(msg.data() + 8, &due, 8);
             chan.send(Direction::Ping, msg);
           }
           shared->result.sent = i - spec.warmup;
           std::memcpy(msg.data(), &kEndOfStream, 8);
           chan.send(Direction::Ping, msg);
           chan.close();
         }};
  Role b{"B", spec.cpus.b, [&](const std::function<void()>& ready) {
           chan.open_echo();
           auto hist = std::make_unique<Histogram>();
           std::uint64_t expected = 0, lost = 0, received = 0, first_due = 0, last = 0;
           bool done = false;
           auto on = [&](Bytes m) {
             const std::uint64_t now = ticks();
             std::uint64_t seq, due;
             std::memcpy(&seq, m.data(), 8);
             std::memcpy(&due, m.data() + 8, 8);
             if (seq == kEndOfStream) {
               done = true;
               return;
             }
             if (m.size() != chan.size() || seq < expected)
               fail(format("%s: message %" PRIu64 " of %zu bytes after %" PRIu64,
                           chan.name().c_str(), seq, m.size(), expected));
             lost += seq - expected;
             expected = seq + 1;
             if (seq < spec.warmup) return;
             if (received == 0) first_due = due;
             ++received;
             last = now;
             hist->record(now > due ? now - due : 0);
           };
           ready();
           while (!done)
             if (chan.receive(Direction::Ping, on, 256) == 0) relax();
           shared->result.hist = *hist;
           shared->result.received = received;
           shared->result.lost = lost;
           shared->first_due = first_due;
           shared->last_receive = last;
           chan.close();
         }};
  run_processes(spec.timeout_s, errors, {a, b});
  OneWayResult r = shared->result;
  if (shared->last_receive > shared->first_due)
    r.seconds =
        static_cast<double>(shared->last_receive - shared->first_due) * spec.ns_per_tick * 1e-9;
  shared->~OneWayShared();
  return r;
}

}  // namespace shmbus::bench
