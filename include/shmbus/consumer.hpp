// shmbus/consumer.hpp — reading one partition of a topic with an independent cursor.
//
// poll() hands up to `max_messages` committed messages to a handler and then
// publishes the cursor once. On `block` topics messages are delivered in
// place (zero-copy); on `overwrite` topics, and for data older than the
// consumer's join, each frame is copied out and checked against the tail
// before delivery, because a producer may be overwriting it.
//
// Results: Ok (count > 0), Empty, Lagged (see lost(); the cursor has moved
// past the lost range), Corrupt (the frame at position() fails validation; the
// cursor stays, seek() past it), Evicted (see below).
//
// Eviction (`block` topics supervised by shmbusd): a consumer whose cursor
// stays put for the topic's slow_consumer_timeout while producers are held
// back by it loses its cursor slot; producers move on and may overwrite what
// it has not read. poll() then returns Evicted (count 0) until rejoin().
// poll() checks its slot before each in-place delivery and after the last
// one (one load of the consumer's own slot line, no shared traffic): when a
// batch ends with Evicted and count > 0, the messages before the last were
// intact when handed over, and the last one may have been overwritten while
// its handler read it — treat it as suspect.
//
// Concurrency: a Consumer object belongs to one thread at a time. Any number
// of consumers may read a partition; each sees every message.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>
#include <type_traits>

#include "shmbus/detail/poll_in_place.hpp"
#include "shmbus/function_ref.hpp"
#include "shmbus/message.hpp"
#include "shmbus/options.hpp"
#include "shmbus/status.hpp"

namespace shmbus {

// Positions [from, to) that producers overwrote before this consumer read them.
struct LostRange {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
};

using Handler = FunctionRef<void(const Message&)>;

class Consumer {
 public:
  // Inline, so that the check sees the headers the caller was compiled with.
  static Result<Consumer> open(std::string_view bus, std::string_view topic,
                               const ConsumerOptions& options = {}) {
    if (auto ok = detail::check_frame_abi(detail::kFrameAbi); !ok) return ok.error();
    return open_partition(bus, topic, options);
  }
  Consumer(Consumer&&) noexcept;
  Consumer& operator=(Consumer&&) noexcept;
  ~Consumer();  // frees the cursor slot

  // Never waits. handler(const Message&) must not keep the Message past its
  // call; if it throws, the messages of this batch not yet delivered stay
  // unread, and the one that threw is delivered again (at-least-once). The
  // common case runs inline in the caller (shmbus/detail/poll_in_place.hpp),
  // the handler called directly; the rest in the library.
  template <class F>
  requires std::is_invocable_v<F&, const Message&> PollResult
  poll(F&& handler, std::uint32_t max_messages = 64) {
    return detail::poll_in_place(*state_, handler, max_messages,
                                 [&](const detail::PollProgress& at) {
                                   return poll_rest(Handler(handler), max_messages, at);
                                 });
  }
  // Waits with the consumer's WaitStrategy until at least one message is
  // delivered, another status ends the batch, or `timeout` passes (Timeout).
  // With max_messages 0 it delivers nothing and returns at once, as poll().
  PollResult poll_wait(Handler handler, std::uint32_t max_messages,
                       std::chrono::nanoseconds timeout);

  // Moves the cursor to `position`, which must be a frame boundary (a
  // Message::position or a segment start) still in the ring.
  Outcome seek(std::uint64_t position);
  // After Evicted: leaves the old slot and joins again at the current tail
  // (as Start::Latest). lost() is then the range skipped, [old position,
  // new position); seek() can go back into what the ring still holds.
  // Fails when no cursor slot is free, or when the consumer was not evicted.
  Outcome rejoin();
  std::uint64_t position() const noexcept;
  LostRange lost() const noexcept;  // the range of the last Lagged
  std::uint32_t partition() const noexcept;

  struct Impl;

 private:
  explicit Consumer(std::unique_ptr<Impl> impl);
  static Result<Consumer> open_partition(std::string_view bus, std::string_view topic,
                                         const ConsumerOptions& options);
  // poll() after its common case stopped at `at`.
  PollResult poll_rest(Handler handler, std::uint32_t max_messages, const detail::PollProgress& at);
  std::unique_ptr<Impl> impl_;
  detail::PollState* state_;  // in *impl_
};

}  // namespace shmbus
