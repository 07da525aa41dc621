// bench/harness/channel.hpp — a benchmarked mechanism between two processes,
// and the two ways the harness drives it.
//
// A Channel has two directions: Ping (process A -> B) and Pong (B -> A).
// The parent constructs it (anything both processes must share is made
// there, before fork); then A calls open_ping() and B open_echo().
//
//   run_rt_suite   round trips: A sends a message on Ping and waits for its
//                  echo on Pong; B echoes. One pair of processes runs every
//                  channel of the suite, the channels taking turns in blocks
//                  of kBlock round trips, so that whatever the host does to
//                  the two CPUs during the run lands on all of them alike.
//   run_one_way    A sends messages on Ping, back-to-back or at a fixed
//                  rate, each carrying its intended send time; B records
//                  the latency from that time (coordinated omission
//                  corrected) and the throughput.
//
// A mechanism implements send() and receive(); the generic ping()/echo()
// loops use them (one indirect call per message). The references and shmbus
// override ping()/echo() with loops written against their own types.
//
// Message layout: round trips carry the round trip's sequence number in the
// first 8 bytes; one-way messages [u64 sequence][u64 intended send tick],
// and a last one with sequence kEndOfStream.
//
// Concurrency: each process uses its own copy of the Channel (after fork);
// one thread each.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "histogram.hpp"
#include "processes.hpp"
#include "shmbus/function_ref.hpp"

namespace shmbus::bench {

enum class Direction { Ping, Pong };
using Bytes = std::span<const std::byte>;
using Receiver = FunctionRef<void(Bytes)>;

inline constexpr std::uint64_t kEndOfStream = ~std::uint64_t{0};

class Channel {
 public:
  Channel(std::string name, std::uint32_t size) : name_(std::move(name)), size_(size) {}
  virtual ~Channel() = default;
  virtual void open_ping() = 0;  // in A, before it reports ready
  virtual void open_echo() = 0;  // in B
  // A: n round trips; those with index >= skip go into h (when non-null).
  // period_ticks > 0: one round trip every period, each measured from its
  // intended start (Pace).
  virtual void ping(Histogram* h, std::uint64_t n, std::uint64_t skip, std::uint64_t period_ticks);
  // B: echoes n messages; `measured`: count context switches (blocking()).
  virtual void echo(std::uint64_t n, bool measured);
  // Sends one message, waiting while the mechanism is full.
  virtual void send(Direction dir, Bytes message);
  // Hands up to `max` messages to `r`; returns how many. Mechanisms that
  // spin return 0 when there is none; blocking ones wait for one.
  virtual std::uint32_t receive(Direction dir, Receiver r, std::uint32_t max);
  virtual void close() {}
  virtual bool blocking() const { return false; }
  const std::string& name() const { return name_; }
  std::uint32_t size() const { return size_; }
  std::uint64_t switches = 0;  // voluntary context switches while measured (blocking only)

 protected:
  std::string name_;
  std::uint32_t size_;
  std::uint64_t seq_ = 0;  // round trips so far
};

// Voluntary context switches of this process so far.
std::uint64_t voluntary_switches() noexcept;

inline constexpr std::uint64_t kBlock = 1000;   // round trips per turn
inline constexpr std::uint64_t kBlockSkip = 8;  // not recorded after a change of channel

struct Cpus {
  int a = 0;
  int b = 1;
};

struct RtSpec {
  Cpus cpus;
  std::uint64_t round_trips = 0;   // per channel
  std::uint64_t warmup = 0;        // per channel, before the measured turns
  std::uint64_t period_ticks = 0;  // 0: back-to-back
  int timeout_s = 120;
};

struct RtSample {
  Histogram hist;            // ticks
  std::uint64_t switches_a;  // blocking channels: A's voluntary context switches, measured part
  std::uint64_t switches_b;  // B's, whole turns (skipped round trips too)
  std::uint64_t busy_ticks;  // A's time in the channel's measured turns
};

// Runs the channels in one pair of processes; returns one RtSample per
// channel (in a SharedMemory the caller does not see: copied out).
std::vector<RtSample> run_rt_suite(const RtSpec& spec, ProcessErrors* errors,
                                   std::vector<std::unique_ptr<Channel>>& chans);
// The round trips B's switch count covers, for a channel of a suite of `channels`.
std::uint64_t echoed_round_trips(std::uint64_t round_trips, std::size_t channels);

struct OneWaySpec {
  Cpus cpus;
  std::uint64_t messages = 0;      // measured messages; 0: run for `seconds`
  double seconds = 0;              // with messages == 0
  std::uint64_t warmup = 0;        // messages sent first, not measured
  std::uint64_t period_ticks = 0;  // 0: back-to-back (throughput)
  double ns_per_tick = 1;
  int timeout_s = 120;
};

struct OneWayResult {
  Histogram hist;              // latency from the intended send time, ticks
  std::uint64_t sent = 0;      // measured messages A sent
  std::uint64_t received = 0;  // measured messages B received
  std::uint64_t lost = 0;      // gaps in the sequence (overwrite topics)
  double seconds = 0;          // first measured intended send -> last receive
  double msgs_per_s() const { return seconds > 0 ? static_cast<double>(received) / seconds : 0; }
};

// Fresh processes for one channel; the message size is the channel's, >= 16.
OneWayResult run_one_way(const OneWaySpec& spec, ProcessErrors* errors, Channel& chan);

}  // namespace shmbus::bench
