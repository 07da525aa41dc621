// bench/harness/bare.hpp — the references every shmbus figure is read
// against: the shared-memory mechanisms a message bus is built from, with
// nothing else.
//
//   LineChannel   bare cache-line ping-pong: one counter per direction, each
//                 in its own 128-byte pair of lines; a round trip is two
//                 cache-line transfers, the physical floor
//   BareRing      bare SPSC ring: slots of {u64 sequence, payload} rounded up
//                 to 64-byte lines, a consumer index published per batch and
//                 cached by the producer (back-pressure)
//   SpscChannel   a BareRing per direction
//
// Concurrency: a BareWriter belongs to the one producer process, a
// BareReader to the one consumer process of a ring.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "channel.hpp"
#include "shared_memory.hpp"

namespace shmbus::bench {

template <class T>
std::atomic_ref<T> atomic(T& v) noexcept {
  static_assert(std::atomic_ref<T>::is_always_lock_free);
  return std::atomic_ref<T>(v);
}

// Ring bytes of the references and of the shmbus topics of the harness.
inline constexpr std::uint64_t kRingBytes = 4ull << 20;  // shmbus: 4 segments x 1 MiB

struct BareRing {
  struct alignas(128) Head {
    std::uint64_t
        consumed;  // consumer: store release per batch (pairs with the producer's acquire)
    std::byte pad[120];
  };
  Head* head = nullptr;
  std::byte* slots = nullptr;
  std::uint64_t slot_bytes = 0;
  std::uint64_t count = 0;

  static std::uint64_t slot_size(std::uint32_t payload) { return (8 + payload + 63) & ~63ull; }
  // Bytes of a SharedMemory for a ring of about `ring_bytes` of slots.
  static std::size_t bytes_for(std::uint32_t payload, std::uint64_t ring_bytes);
  // Constructs the ring at `base` (in the parent, before fork).
  static BareRing at(std::byte* base, std::uint32_t payload, std::uint64_t ring_bytes);
  std::uint64_t& seq(std::uint64_t index) const {
    return *reinterpret_cast<std::uint64_t*>(slots + index * slot_bytes);
  }
  std::byte* payload(std::uint64_t index) const { return slots + index * slot_bytes + 8; }
};

class BareWriter {
 public:
  explicit BareWriter(const BareRing& r) : r_(r) {}
  // Message number seq_ + 1; false when the ring is full.
  bool try_write(const std::byte* src, std::size_t n) noexcept {
    const std::uint64_t s = seq_ + 1;
    if (s > limit_) {
      // SYNC POINT: pairs with the reader's release of `consumed`: the slots
      // below it are free.
      limit_ = atomic(r_.head->consumed).load(std::memory_order_acquire) + r_.count;
      if (s > limit_) return false;
    }
    std::memcpy(r_.payload(index_), src, n);
    // SYNC POINT: publishes the payload; pairs with the reader's acquire of seq.
    atomic(r_.seq(index_)).store(s, std::memory_order_release);
    seq_ = s;
    if (++index_ == r_.count) index_ = 0;
    return true;
  }

 private:
  BareRing r_;
  std::uint64_t seq_ = 0;
  std::uint64_t index_ = 0;
  std::uint64_t limit_ = 0;
};

class BareReader {
 public:
  explicit BareReader(const BareRing& r) : r_(r) {}
  // Hands up to `max` messages to f(const std::byte*), then publishes the index.
  template <class F>
  std::uint32_t read(F&& f, std::uint32_t max) noexcept {
    std::uint32_t n = 0;
    while (n < max && atomic(r_.seq(index_)).load(std::memory_order_acquire) == seq_ + 1) {
      f(static_cast<const std::byte*>(r_.payload(index_)));
      ++seq_;
      if (++index_ == r_.count) index_ = 0;
      ++n;
    }
    if (n > 0) atomic(r_.head->consumed).store(seq_, std::memory_order_release);
    return n;
  }

 private:
  BareRing r_;
  std::uint64_t seq_ = 0;
  std::uint64_t index_ = 0;
};

class LineChannel : public Channel {
 public:
  LineChannel();
  void open_ping() override {}
  void open_echo() override {}
  void ping(Histogram* h, std::uint64_t n, std::uint64_t skip, std::uint64_t period_ticks) override;
  void echo(std::uint64_t n, bool measured) override;

 private:
  struct alignas(128) PaddedWord {
    std::uint64_t v;
    std::byte pad[120];
  };
  SharedMemory mem_;
  PaddedWord* ping_;
  PaddedWord* pong_;
};

class SpscChannel : public Channel {
 public:
  explicit SpscChannel(std::uint32_t size);
  void open_ping() override;
  void open_echo() override;
  void ping(Histogram* h, std::uint64_t n, std::uint64_t skip, std::uint64_t period_ticks) override;
  void echo(std::uint64_t n, bool measured) override;
  void send(Direction dir, Bytes message) override;
  std::uint32_t receive(Direction dir, Receiver r, std::uint32_t max) override;

 private:
  std::size_t one_;
  SharedMemory mem_;
  BareRing ping_, pong_;
  std::vector<std::byte> msg_;
  // A writes ping and reads pong; B the other way round.
  std::optional<BareWriter> writer_;
  std::optional<BareReader> reader_;
};

}  // namespace shmbus::bench
