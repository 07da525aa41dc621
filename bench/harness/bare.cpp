#include "bare.hpp"

#include <algorithm>
#include <cinttypes>
#include <new>

#include "clock.hpp"
#include "failure.hpp"

namespace shmbus::bench {

namespace {
// Slots of `slot_bytes` in about `ring_bytes` (at least two), and the pages
// of a mapping with one page of indices before them.
std::uint64_t slot_count(std::uint64_t slot_bytes, std::uint64_t ring_bytes) {
  return std::max<std::uint64_t>(2, ring_bytes / slot_bytes);
}
std::size_t mapping_bytes(std::uint64_t slot_bytes, std::uint64_t ring_bytes) {
  return static_cast<std::size_t>((4096 + slot_count(slot_bytes, ring_bytes) * slot_bytes + 4095) &
                                  ~4095ull);
}
}  // namespace

std::size_t BareRing::bytes_for(std::uint32_t payload, std::uint64_t ring_bytes) {
  return mapping_bytes(slot_size(payload), ring_bytes);
}

BareRing BareRing::at(std::byte* base, std::uint32_t payload, std::uint64_t ring_bytes) {
  BareRing r;
  r.head = new (base) Head{};
  r.slots = base + 4096;
  r.slot_bytes = slot_size(payload);
  r.count = slot_count(r.slot_bytes, ring_bytes);
  return r;
}

std::size_t IndexRing::bytes_for(std::uint32_t payload, std::uint64_t ring_bytes) {
  return mapping_bytes(slot_size(payload), ring_bytes);
}

IndexRing IndexRing::at(std::byte* base, std::uint32_t payload, std::uint64_t ring_bytes) {
  IndexRing r;
  r.written = new (base) Index{};
  r.consumed = new (base + sizeof(Index)) Index{};
  r.slots = base + 4096;
  r.slot_bytes = slot_size(payload);
  r.count = slot_count(r.slot_bytes, ring_bytes);
  return r;
}

LineChannel::LineChannel() : Channel("bare cache-line", 8), mem_(2 * sizeof(PaddedWord)) {
  ping_ = new (mem_.data()) PaddedWord{};
  pong_ = new (mem_.data() + sizeof(PaddedWord)) PaddedWord{};
}

void LineChannel::ping(Histogram* h, std::uint64_t n, std::uint64_t skip,
                       std::uint64_t period_ticks) {
  Pace pace(period_ticks);
  for (std::uint64_t k = 0; k < n; ++k) {
    const std::uint64_t s = ++seq_;
    const std::uint64_t t0 = pace.start();
    // SYNC POINT: pairs with B's acquire of ping (no payload: the count is the message).
    atomic(ping_->v).store(s, std::memory_order_release);
    while (atomic(pong_->v).load(std::memory_order_acquire) != s) relax();
    const std::uint64_t t1 = ticks();
    if (h != nullptr && k >= skip) h->record(t1 - t0);
  }
}

void LineChannel::echo(std::uint64_t n, bool) {
  for (std::uint64_t k = 0; k < n; ++k) {
    const std::uint64_t s = ++seq_;
    while (atomic(ping_->v).load(std::memory_order_acquire) != s) relax();
    // SYNC POINT: pairs with A's acquire of pong.
    atomic(pong_->v).store(s, std::memory_order_release);
  }
}

template <class Ring>
SpscChannel<Ring>::SpscChannel(std::uint32_t size)
    : Channel(RingKind<Ring>::kName, size),
      one_(Ring::bytes_for(size, kRingBytes)),
      mem_(2 * one_),
      ping_(Ring::at(mem_.data(), size, kRingBytes)),
      pong_(Ring::at(mem_.data() + one_, size, kRingBytes)),
      msg_(size) {}

template <class Ring>
void SpscChannel<Ring>::open_ping() {
  writer_.emplace(ping_);
  reader_.emplace(pong_);
}

template <class Ring>
void SpscChannel<Ring>::open_echo() {
  reader_.emplace(ping_);
  writer_.emplace(pong_);
}

template <class Ring>
void SpscChannel<Ring>::ping(Histogram* h, std::uint64_t n, std::uint64_t skip,
                             std::uint64_t period_ticks) {
  std::uint64_t got = 0;
  auto on = [&](const std::byte* p) { std::memcpy(&got, p, 8); };
  Pace pace(period_ticks);
  for (std::uint64_t k = 0; k < n; ++k) {
    const std::uint64_t s = ++seq_;
    std::memcpy(msg_.data(), &s, 8);
    const std::uint64_t t0 = pace.start();
    if (!writer_->try_write(msg_.data(), size_)) fail("bare ring unexpectedly full");
    while (reader_->read(on, 64) == 0) relax();
    const std::uint64_t t1 = ticks();
    if (got != s) fail(format("%s: echo %" PRIu64 " for %" PRIu64, name_.c_str(), got, s));
    if (h != nullptr && k >= skip) h->record(t1 - t0);
  }
}

template <class Ring>
void SpscChannel<Ring>::echo(std::uint64_t n, bool) {
  auto on = [&](const std::byte* p) {
    if (!writer_->try_write(p, size_)) fail("bare ring unexpectedly full");
  };
  for (std::uint64_t done = 0; done < n;) {
    const std::uint32_t k = reader_->read(on, 64);
    if (k == 0) relax();
    done += k;
  }
}

// One-way: A's writer is on ping, B's reader too; `dir` is implied by the side.
template <class Ring>
void SpscChannel<Ring>::send(Direction, Bytes message) {
  while (!writer_->try_write(message.data(), message.size())) relax();
}

template <class Ring>
std::uint32_t SpscChannel<Ring>::receive(Direction, Receiver r, std::uint32_t max) {
  return reader_->read([&](const std::byte* p) { r(Bytes(p, size_)); }, max);
}

template class SpscChannel<BareRing>;
template class SpscChannel<IndexRing>;

}  // namespace shmbus::bench
