// shmbus-test-worker — the producer and consumer processes of the multi-process tests.
//
//   shmbus-test-worker produce BUS TOPIC PRODUCER_ID COUNT MAX_BODY
//   shmbus-test-worker consume BUS TOPIC PRODUCERS COUNT_EACH TIMEOUT_S
//   shmbus-test-worker acked BUS TOPIC PRODUCER_ID MAX_BODY ACK_FILE PACE_NS
//   shmbus-test-worker end BUS TOPIC
//   shmbus-test-worker ping|echo BUS ROUND_TRIPS
//
// `acked` publishes until it is killed, and after each offer that returned
// Ok stores how many did in the u64 at the start of ACK_FILE (mapped shared),
// so that a test that kills it knows which messages it was promised; it
// spins PACE_NS between messages (0: none).
//
// `end`, run after every producer has exited, publishes the end marker that
// tells consumers to stop: on `overwrite`, a producer's last messages may be
// overwritten by other producers' later ones, so "got every last message"
// cannot be the end condition.
//
// `ping` and `echo` are the two ends of a round trip over the topics "ping"
// and "pong" in which both consumers sleep on the futex (WaitStrategy::Futex)
// and each side waits a pseudo-random 0-150 µs before it publishes, so that
// publishes land before, while and after the other side falls asleep (it
// spins ~2000 pauses first). Every message must arrive within 3 s: a sleeper
// that was not woken (it sleeps until a 10 s deadline) fails the run (exit 1). (The narrow race of
// the fence pairing itself is tested by tests/unit/asymmetric_fence_test.cpp.)
//
// A consumer checks every message (message_check.hpp): sender, order per
// sender, content checksum, and at the end the count. On an `overwrite` topic
// a gap in a sender's sequence is allowed only across a Lagged result, and is
// counted as lost. Exit 0 when everything checks; otherwise it prints what
// went wrong and exits 1. Setup errors exit 2.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "message_check.hpp"
#include "shmbus/shmbus.hpp"

using namespace shmbus;
using shmbus::testing::CheckHeader;

namespace {

constexpr std::uint32_t kEndMarker = 0xffffffff;

// Offers `msg` until it is taken: the first status other than Full.
Status offer_until_taken(Producer& p, std::span<const std::byte> msg) {
  Status s;
  while ((s = p.offer(msg)) == Status::Full) ::sched_yield();
  return s;
}

int publish_end(const char* bus, const char* topic) {
  auto p = Producer::open(bus, topic);
  if (!p) {
    std::fprintf(stderr, "end: %s\n", p.error().message.c_str());
    return 2;
  }
  CheckHeader h{kEndMarker, 0, 0, testing::fnv1a({})};
  return offer_until_taken(*p, std::as_bytes(std::span(&h, 1))) == Status::Ok ? 0 : 1;
}

int produce(const char* bus, const char* topic, std::uint32_t id, std::uint64_t count,
            std::uint32_t max_body) {
  auto p = Producer::open(bus, topic);
  if (!p) {
    std::fprintf(stderr, "producer %u: %s\n", id, p.error().message.c_str());
    return 2;
  }
  std::vector<std::byte> msg;
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    testing::make_message(id, seq, max_body, msg);
    if (Status s = offer_until_taken(*p, msg); s != Status::Ok) {
      std::fprintf(stderr, "producer %u: offer: %s\n", id, to_string(s));
      return 1;
    }
  }
  return 0;
}

int produce_acked(const char* bus, const char* topic, std::uint32_t id, std::uint32_t max_body,
                  const char* ack_file, std::uint64_t pace_ns) {
  const int fd = ::open(ack_file, O_RDWR);
  void* map =
      fd < 0 ? MAP_FAILED
             : ::mmap(nullptr, sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    std::fprintf(stderr, "acked %u: cannot map %s: %s\n", id, ack_file, std::strerror(errno));
    return 2;
  }
  std::atomic_ref<std::uint64_t> acked(*static_cast<std::uint64_t*>(map));
  auto p = Producer::open(bus, topic);
  if (!p) {
    std::fprintf(stderr, "acked %u: %s\n", id, p.error().message.c_str());
    return 2;
  }
  std::vector<std::byte> msg;
  for (std::uint64_t seq = 0;; ++seq) {
    testing::make_message(id, seq, max_body, msg);
    if (Status s = offer_until_taken(*p, msg); s != Status::Ok) {
      std::fprintf(stderr, "acked %u: offer: %s\n", id, to_string(s));
      return 1;
    }
    acked.store(seq + 1, std::memory_order_release);
    if (pace_ns != 0) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(pace_ns);
      while (std::chrono::steady_clock::now() < until) {
      }
    }
  }
}

int consume(const char* bus, const char* topic, std::uint32_t producers, std::uint64_t count,
            int timeout_s) {
  ConsumerOptions o;
  o.start = ConsumerOptions::Start::Earliest;
  auto c = Consumer::open(bus, topic, o);
  if (!c) {
    std::fprintf(stderr, "consumer: %s\n", c.error().message.c_str());
    return 2;
  }
  std::vector<std::uint64_t> next(producers, 0);    // next expected seq per producer
  std::vector<bool> gap_allowed(producers, false);  // a Lagged happened since its last message
  std::uint64_t received = 0, lost = 0, lagged = 0;
  bool ended = false;
  std::string failure;
  auto handler = [&](const Message& m) {
    CheckHeader h;
    if (!failure.empty() || ended) return;
    if (testing::check_message(m.payload, h) && h.producer == kEndMarker) {
      ended = true;  // every producer is done: what we did not get was lost, or a bug
      for (std::uint32_t k = 0; k < producers; ++k) {
        if (next[k] != count && !gap_allowed[k])
          failure = "producer " + std::to_string(k) + ": only " + std::to_string(next[k]) + " of " +
                    std::to_string(count) + " messages, with no Lagged since";
        lost += count - next[k];
      }
      return;
    }
    if (!testing::check_message(m.payload, h) || h.producer >= producers) {
      failure = "damaged message at position " + std::to_string(m.position);
      return;
    }
    std::uint64_t& want = next[h.producer];
    if (h.seq != want && !(h.seq > want && gap_allowed[h.producer])) {
      failure = "producer " + std::to_string(h.producer) + ": got seq " + std::to_string(h.seq) +
                ", expected " + std::to_string(want);
      return;
    }
    lost += h.seq - want;
    want = h.seq + 1;
    gap_allowed[h.producer] = false;
    ++received;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (!ended && failure.empty()) {
    PollResult r = c->poll_wait(handler, 256, std::chrono::milliseconds(100));
    if (r.status == Status::Lagged) {
      ++lagged;
      gap_allowed.assign(producers, true);
    } else if (r.status != Status::Ok && r.status != Status::Timeout) {
      failure = std::string("poll: ") + to_string(r.status);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      auto info = Topic::describe(bus, topic);
      failure = "timed out at position " + std::to_string(c->position()) + ", tail " +
                (info ? std::to_string(info->partitions[0].tail) : info.error().message);
    }
  }
  std::printf("consumer %d: received %llu lost %llu lagged %llu\n", static_cast<int>(::getpid()),
              static_cast<unsigned long long>(received), static_cast<unsigned long long>(lost),
              static_cast<unsigned long long>(lagged));
  if (failure.empty() && received + lost != count * producers)
    failure = "count: received " + std::to_string(received) + " + lost " + std::to_string(lost) +
              " != " + std::to_string(count * producers);
  if (!failure.empty()) {
    std::fprintf(stderr, "consumer %d FAILED: %s\n", static_cast<int>(::getpid()), failure.c_str());
    return 1;
  }
  return 0;
}

// xorshift: the same delays in every run.
std::uint32_t next_delay_us(std::uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return static_cast<std::uint32_t>(state % 151);
}

void spin_for_us(std::uint32_t us) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  while (std::chrono::steady_clock::now() < until) {
  }
}

// One end of the futex round trip: publishes on `out`, sleeps on `in`.
int round_trips(const char* bus, bool pinger, std::uint64_t count) {
  const char* name = pinger ? "ping" : "echo";
  ConsumerOptions co;
  co.wait = WaitStrategy::Futex;
  auto in = Consumer::open(bus, pinger ? "pong" : "ping", co);
  auto out = Producer::open(bus, pinger ? "ping" : "pong");
  if (!in || !out) {
    std::fprintf(stderr, "%s: %s\n", name, (!in ? in.error() : out.error()).message.c_str());
    return 2;
  }
  std::uint64_t rng = pinger ? 0x9e3779b97f4a7c15ull : 0xbf58476d1ce4e5b9ull;
  std::uint64_t got = 0;
  auto on = [&](const Message& m) { std::memcpy(&got, m.payload.data(), sizeof got); };
  // Message i, woken in time: a sleeper that missed its wake-up sleeps until
  // poll_wait's deadline and then finds the message all the same, so the
  // time it took is what tells. (The echo's first wait includes the pinger's start.)
  auto receive = [&](std::uint64_t i) {
    const auto start = std::chrono::steady_clock::now();
    const PollResult r = in->poll_wait(on, 1, std::chrono::seconds(10));
    const auto took = std::chrono::steady_clock::now() - start;
    if (r.status == Status::Ok && got == i &&
        (took < std::chrono::seconds(3) || (!pinger && i == 0)))
      return true;
    std::fprintf(stderr, "%s: round trip %llu: %s (got %llu) after %lld ms: a missed wake-up?\n",
                 name, static_cast<unsigned long long>(i), to_string(r.status),
                 static_cast<unsigned long long>(got),
                 static_cast<long long>(
                     std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
    return false;
  };
  for (std::uint64_t i = 0; i < count; ++i) {
    if (!pinger && !receive(i)) return 1;  // the echo waits for ping i first
    spin_for_us(next_delay_us(rng));
    if (Status s = out->offer(std::as_bytes(std::span(&i, 1))); s != Status::Ok) {
      std::fprintf(stderr, "%s: offer: %s\n", name, to_string(s));
      return 1;
    }
    if (pinger && !receive(i)) return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "produce" && argc == 7)
    return produce(argv[2], argv[3], static_cast<std::uint32_t>(std::stoul(argv[4])),
                   std::stoull(argv[5]), static_cast<std::uint32_t>(std::stoul(argv[6])));
  if (mode == "consume" && argc == 7)
    return consume(argv[2], argv[3], static_cast<std::uint32_t>(std::stoul(argv[4])),
                   std::stoull(argv[5]), std::stoi(argv[6]));
  if (mode == "end" && argc == 4) return publish_end(argv[2], argv[3]);
  if (mode == "acked" && argc == 8)
    return produce_acked(argv[2], argv[3], static_cast<std::uint32_t>(std::stoul(argv[4])),
                         static_cast<std::uint32_t>(std::stoul(argv[5])), argv[6],
                         std::stoull(argv[7]));
  if ((mode == "ping" || mode == "echo") && argc == 4)
    return round_trips(argv[2], mode == "ping", std::stoull(argv[3]));
  std::fprintf(stderr,
               "usage: %s produce BUS TOPIC PRODUCER_ID COUNT MAX_BODY\n"
               "       %s consume BUS TOPIC PRODUCERS COUNT_EACH TIMEOUT_S\n"
               "       %s acked BUS TOPIC PRODUCER_ID MAX_BODY ACK_FILE PACE_NS\n"
               "       %s end BUS TOPIC\n"
               "       %s ping|echo BUS ROUND_TRIPS\n",
               argv[0], argv[0], argv[0], argv[0], argv[0]);
  return 2;
}
