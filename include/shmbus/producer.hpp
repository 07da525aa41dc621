// shmbus/producer.hpp — publishing into one partition of a topic.
//
// Two ways to publish:
//   offer(bytes)                      copies the payload into the ring;
//   claim(n) / commit() / abort()     zero-copy: write straight into the ring,
//                                     then publish (abort turns the space into padding).
// On a `block` topic both return Status::Full while the slowest consumer is a
// whole ring behind; retry (or wait) and try again. On an `overwrite` topic
// they never wait. One exception, on a `block` topic with several producers:
// a producer that found room, but lost it to another producer's claim before
// its own fetch_add made the claim, cannot give the claim back, so it waits
// (options.wait) until the consumers free the room, however long that takes
// (shmbusd evicts a stuck consumer only if the topic sets
// slow_consumer_timeout_ms).
//
// A claim must be committed or aborted within the topic's
// hung_producer_timeout (1 s by default) when shmbusd supervises the bus:
// past it the daemon revokes the claim (consumers skip it) and commit() or
// abort() return Status::Revoked; nothing was published, so publishing the
// message again duplicates nothing. Late writes into a revoked claim's
// payload span are harmless (layout.hpp, "Hung producer").
//
// Concurrency: one Producer object belongs to one thread at a time. Any number
// of Producer objects, in any threads and processes, may publish to the same
// partition concurrently unless the topic is `exclusive_producer`, where one
// producer at a time may attach.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "shmbus/detail/offer_exclusive.hpp"
#include "shmbus/message.hpp"
#include "shmbus/options.hpp"
#include "shmbus/status.hpp"

namespace shmbus {

// Space claimed in the ring; valid until commit() or abort().
struct Claim {
  std::span<std::byte> payload;
  std::uint64_t position = 0;
};

class Producer {
 public:
  // Takes a producer slot of the partition (slot 0 of an exclusive one),
  // first reaping the slots of producers that died. EBUSY when every slot
  // has a live owner. A slot changing owners (a joiner filling it in, a
  // reaper padding after a crash) is waited for, up to a second, so an
  // exclusive producer restarted right after a crash does not fail for that.
  // Inline, so that the check sees the headers the caller was compiled with.
  static Result<Producer> open(std::string_view bus, std::string_view topic,
                               const ProducerOptions& options = {}) {
    if (auto ok = detail::check_frame_abi(detail::kFrameAbi); !ok) return ok.error();
    return open_partition(bus, topic, options);
  }
  Producer(Producer&&) noexcept;
  Producer& operator=(Producer&&) noexcept;
  ~Producer();  // leaves the producer slot; an open claim is aborted

  // The common case (exclusive topic, no key) runs inline in the caller
  // (shmbus/detail/offer_exclusive.hpp); the rest in the library.
  [[nodiscard]] Status offer(std::span<const std::byte> payload) noexcept {
    return detail::offer_exclusive(
        *state_, payload, [&] { return offer_rest(payload); }, [&] { wake_consumers(); },
        [&] { return new_anchor(); });
  }
  [[nodiscard]] Status offer(std::span<const std::byte> payload, std::string_view key,
                             std::span<const Property> properties = {}) noexcept;

  // One claim may be open at a time per Producer.
  [[nodiscard]] Status claim(std::size_t payload_bytes, Claim& out) noexcept;
  [[nodiscard]] Status claim(std::size_t payload_bytes, std::string_view key,
                             std::span<const Property> properties, Claim& out) noexcept;
  [[nodiscard]] Status commit(Claim& claim) noexcept;
  [[nodiscard]] Status abort(Claim& claim) noexcept;

  // Durable topics (TopicOptions::durable): waits until every message this
  // producer published is durable, i.e. in the segment files and covered
  // by an fdatasync as the topic's fsync policy says (fsync = never: in
  // the files), like Kafka's flush() with acks=all. Ok; Timeout; Invalid
  // on a topic that is not durable; SpillFailed when the spiller stopped
  // on an error first. Needs shmbusd (its spiller); polls the watermark.
  [[nodiscard]] Status wait_durable(std::chrono::nanoseconds timeout) noexcept;
  // The same for every position below `end` (e.g. a Claim's position + 1).
  [[nodiscard]] Status wait_durable(std::uint64_t end, std::chrono::nanoseconds timeout) noexcept;

  // The largest payload a frame may carry (a frame never crosses a segment).
  std::size_t max_payload() const noexcept;
  std::uint32_t partition() const noexcept;

  struct Impl;

 private:
  explicit Producer(std::unique_ptr<Impl> impl);
  static Result<Producer> open_partition(std::string_view bus, std::string_view topic,
                                         const ProducerOptions& options);
  Status offer_rest(std::span<const std::byte> payload) noexcept;
  void wake_consumers() noexcept;
  std::int64_t new_anchor() noexcept;
  std::unique_ptr<Impl> impl_;
  detail::OfferState* state_;  // in *impl_
};

}  // namespace shmbus
