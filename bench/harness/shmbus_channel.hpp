// bench/harness/shmbus_channel.hpp — shmbus as a benchmarked Channel, and the
// topics a benchmark creates for it.
//
// ShmbusChannel: A publishes on the ping topic and polls the pong topic; B
// polls ping and, in its handler, offers the payload on pong. One-way: A
// publishes on ping, B polls it.
//
// BenchTopics: creates topics for a run and removes them when it ends, with
// Topic::create and Topic::remove: through shmbusd when it runs for the bus
// (its control socket exists: SHMBUS_SOCKET, or the default path), so that
// the producers and consumers attach through it as any client would;
// otherwise in the bus directory.
//
// Concurrency: BenchTopics in the parent only; a ShmbusChannel as a Channel.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "channel.hpp"
#include "shmbus/shmbus.hpp"

namespace shmbus::bench {

class BenchTopics {
 public:
  explicit BenchTopics(std::string bus);
  BenchTopics(const BenchTopics&) = delete;
  BenchTopics& operator=(const BenchTopics&) = delete;
  ~BenchTopics();  // removes the topics it created; reports failures on stderr
  // Fails (Failure) naming the topic and the reason.
  void create(const std::string& topic, const TopicOptions& options);
  const std::string& bus() const { return bus_; }
  // The daemon's socket, or "" when the topics are made in the bus directory.
  const std::string& daemon_socket() const { return socket_; }

 private:
  std::string bus_;
  std::string socket_;
  std::vector<std::string> made_;
};

// The topic options of the harness: block, frame_alignment 64, exclusive
// producer, 4 x 1 MiB segments (the bare references use as many bytes).
TopicOptions latency_topic();

// Set-up helpers that fail (Failure) naming the topic.
Producer open_producer(const std::string& bus, const std::string& topic, const ProducerOptions& o);
Consumer open_consumer(const std::string& bus, const std::string& topic, const ConsumerOptions& o);
[[noreturn]] void bad_status(const std::string& what, Status s);

struct ShmbusRt {
  std::string bus{};
  std::string ping_topic{};
  std::string pong_topic{};
  std::uint32_t size = 32;
  bool timestamps = true;                      // ProducerOptions::timestamps
  WaitStrategy wait = WaitStrategy::BusySpin;  // consumers; BusySpin polls with relax()
  bool claim = false;                          // A publishes with claim + memcpy + commit
  std::uint64_t gap_us = 0;                    // A sleeps this long before each round trip
  // B echoes m.payload (sized by the frame's length field) instead of the
  // message size both sides know, which is what the bare SPSC ring's echo
  // copies. On this VM the copy that waits for the length load costs a tenth
  // to a fifth of a 64 B round trip (bench/latency.cpp's "echo sized by frame").
  bool echo_frame_length = false;
  bool pretouch = false;  // ProducerOptions::pretouch_next_frame
};

class ShmbusChannel : public Channel {
 public:
  // The topics must exist.
  ShmbusChannel(std::string name, ShmbusRt t);
  void open_ping() override;
  void open_echo() override;
  void close() override;
  bool blocking() const override { return t_.wait == WaitStrategy::Futex; }
  void ping(Histogram* h, std::uint64_t n, std::uint64_t skip, std::uint64_t period_ticks) override;
  void echo(std::uint64_t n, bool measured) override;
  void send(Direction dir, Bytes message) override;
  std::uint32_t receive(Direction dir, Receiver r, std::uint32_t max) override;

 private:
  static constexpr std::chrono::milliseconds kPollTimeout{100};
  // `on` is the handler lambda itself, so that Consumer::poll's common case
  // calls it directly, as an application's loop would.
  template <class F>
  PollResult poll(Consumer& c, F& on, std::uint32_t max);
  // B: polls ping until n messages went to `on`; fails on a bad status.
  template <class F>
  void echo_loop(std::uint64_t n, F& on, const Status& echo_status);
  ProducerOptions producer_options() const;
  ConsumerOptions consumer_options() const;

  ShmbusRt t_;
  std::vector<std::byte> msg_;
  // A: producer on ping, consumer on pong; B the other way round.
  std::optional<Producer> producer_;
  std::optional<Consumer> consumer_;
};

}  // namespace shmbus::bench
