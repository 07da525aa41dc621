#include "shmbus_channel.hpp"

#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "client/attach.hpp"
#include "clock.hpp"
#include "failure.hpp"

namespace shmbus::bench {
BenchTopics::BenchTopics(std::string bus)
    : bus_(std::move(bus)), socket_(client::daemon_socket(bus_).value_or("")) {}

BenchTopics::~BenchTopics() {
  for (const std::string& t : made_)
    if (auto ok = Topic::remove(bus_, t); !ok)
      std::fprintf(stderr, "cannot remove topic %s/%s: %s\n", bus_.c_str(), t.c_str(),
                   ok.error().message.c_str());
}

void BenchTopics::create(const std::string& topic, const TopicOptions& options) {
  if (auto ok = Topic::create(bus_, topic, options); !ok)
    fail("cannot create topic " + bus_ + "/" + topic + ": " + ok.error().message);
  made_.push_back(topic);
}

TopicOptions latency_topic() {
  TopicOptions o;
  o.policy = Policy::Block;
  o.frame_alignment = 64;
  o.exclusive_producer = true;
  o.segment_bytes = 1u << 20;
  o.segment_count = 4;
  o.max_producers = 4;
  o.max_consumers = 4;
  return o;
}

ShmbusChannel::ShmbusChannel(std::string name, ShmbusRt t)
    : Channel(std::move(name), t.size), t_(std::move(t)), msg_(t_.size) {}

void bad_status(const std::string& what, Status s) {
  fail(what + " returned " + to_string(s));
}

Producer open_producer(const std::string& bus, const std::string& topic, const ProducerOptions& o) {
  auto p = Producer::open(bus, topic, o);
  if (!p) fail("cannot open producer on " + topic + ": " + p.error().message);
  return std::move(p).value();
}

Consumer open_consumer(const std::string& bus, const std::string& topic, const ConsumerOptions& o) {
  auto c = Consumer::open(bus, topic, o);
  if (!c) fail("cannot open consumer on " + topic + ": " + c.error().message);
  return std::move(c).value();
}

void ShmbusChannel::open_ping() {
  producer_.emplace(open_producer(t_.bus, t_.ping_topic, producer_options()));
  consumer_.emplace(open_consumer(t_.bus, t_.pong_topic, consumer_options()));
}

void ShmbusChannel::open_echo() {
  consumer_.emplace(open_consumer(t_.bus, t_.ping_topic, consumer_options()));
  producer_.emplace(open_producer(t_.bus, t_.pong_topic, producer_options()));
}

void ShmbusChannel::close() {
  producer_.reset();
  consumer_.reset();
}

template <class F>
PollResult ShmbusChannel::poll(Consumer& c, F& on, std::uint32_t max) {
  return t_.wait == WaitStrategy::BusySpin ? c.poll(on, max) : c.poll_wait(on, max, kPollTimeout);
}

void ShmbusChannel::ping(Histogram* h, std::uint64_t n, std::uint64_t skip,
                         std::uint64_t period_ticks) {
  std::uint64_t got = 0;
  auto on = [&](const Message& m) { std::memcpy(&got, m.payload.data(), 8); };
  Producer& prod = *producer_;
  Consumer& cons = *consumer_;
  const timespec gap{0, static_cast<long>(t_.gap_us * 1000)};
  Pace pace(period_ticks);
  for (std::uint64_t k = 0; k < n; ++k) {
    const std::uint64_t s = ++seq_;
    std::memcpy(msg_.data(), &s, 8);
    if (t_.gap_us != 0) ::nanosleep(&gap, nullptr);
    const bool measured = h != nullptr && k >= skip;
    // Blocking mode counts A's context switches inside the round trips only.
    const std::uint64_t s0 = blocking() && measured ? voluntary_switches() : 0;
    const std::uint64_t t0 = pace.start();
    if (t_.claim) {
      Claim c;
      // Full only when a durable topic's spiller is a ring behind (--durable):
      // back-pressure, waited out as any block producer does.
      Status st;
      while ((st = prod.claim(size_, c)) == Status::Full) relax();
      if (st != Status::Ok) bad_status("claim", st);
      std::memcpy(c.payload.data(), msg_.data(), size_);
      if (auto st = prod.commit(c); st != Status::Ok) bad_status("commit", st);
    } else {
      Status st;
      while ((st = prod.offer(msg_)) == Status::Full) relax();
      if (st != Status::Ok) bad_status("offer", st);
    }
    for (;;) {
      const PollResult r = poll(cons, on, 64);
      if (r.count > 0) break;
      if (r.status == Status::Empty) {
        relax();
      } else if (r.status != Status::Timeout) {
        bad_status("poll on " + t_.pong_topic, r.status);
      }
    }
    const std::uint64_t t1 = ticks();
    if (got != s) fail(format("pong carried %" PRIu64 ", expected %" PRIu64, got, s));
    if (measured) {
      h->record(t1 - t0);
      if (blocking()) switches += voluntary_switches() - s0;
    }
  }
}

void ShmbusChannel::echo(std::uint64_t n, bool measured) {
  Producer& prod = *producer_;
  Status echo_status = Status::Ok;
  const std::uint64_t s0 = blocking() && measured ? voluntary_switches() : 0;
  // The copy's size: the message size both sides know, as the bare SPSC
  // ring's echo copies, or the frame's (echo_frame_length). Two handlers, so
  // that the first copy never waits for the length load (no select between
  // the two sizes); it checks the length after the copy.
  if (t_.echo_frame_length) {
    auto echo_frame = [&](const Message& m) {
      Status st;
      while ((st = prod.offer(m.payload)) == Status::Full) relax();
      if (st != Status::Ok) echo_status = st;
    };
    echo_loop(n, echo_frame, echo_status);
  } else {
    auto echo_size = [&](const Message& m) {
      Status st;
      while ((st = prod.offer(Bytes(m.payload.data(), size_))) == Status::Full) relax();
      if (st != Status::Ok) echo_status = st;
      if (m.payload.size() != size_)
        fail(format("ping carried %zu bytes, expected %u", m.payload.size(), size_));
    };
    echo_loop(n, echo_size, echo_status);
  }
  if (blocking() && measured) switches += voluntary_switches() - s0;
}

template <class F>
void ShmbusChannel::echo_loop(std::uint64_t n, F& on, const Status& echo_status) {
  for (std::uint64_t done = 0; done < n;) {
    const PollResult r = poll(*consumer_, on, 64);
    done += r.count;
    if (echo_status != Status::Ok) bad_status("offer on " + t_.pong_topic, echo_status);
    if (r.status == Status::Empty) {
      relax();
    } else if (r.status != Status::Ok && r.status != Status::Timeout) {
      bad_status("poll on " + t_.ping_topic, r.status);
    }
  }
}

// One-way: A's producer is on ping, and so is B's consumer.
void ShmbusChannel::send(Direction, Bytes message) {
  Status s;
  while ((s = producer_->offer(message)) == Status::Full) relax();
  if (s != Status::Ok) bad_status("offer on " + t_.ping_topic, s);
}

std::uint32_t ShmbusChannel::receive(Direction, Receiver r, std::uint32_t max) {
  auto on = [&](const Message& m) { r(m.payload); };
  const PollResult p = poll(*consumer_, on, max);
  // Lagged (overwrite topics): the lost messages show as a gap in the sequence.
  if (p.status != Status::Ok && p.status != Status::Empty && p.status != Status::Timeout &&
      p.status != Status::Lagged)
    bad_status("poll on " + t_.ping_topic, p.status);
  return p.count;
}

ProducerOptions ShmbusChannel::producer_options() const {
  ProducerOptions po;
  po.timestamps = t_.timestamps;
  po.wait = WaitStrategy::BusySpin;
  po.pretouch_next_frame = t_.pretouch;
  return po;
}

ConsumerOptions ShmbusChannel::consumer_options() const {
  ConsumerOptions co;
  co.wait = t_.wait;
  return co;
}

}  // namespace shmbus::bench
