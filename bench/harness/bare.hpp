// bench/harness/bare.hpp — the references every shmbus figure is read
// against: the shared-memory mechanisms a message bus is built from, with
// nothing else.
//
//   LineChannel   bare cache-line ping-pong: one counter per direction, each
//                 in its own 128-byte pair of lines; a round trip is two
//                 cache-line transfers, the physical floor
//   BareRing      bare SPSC ring: slots of {u64 sequence, payload} rounded up
//                 to 64-byte lines, a consumer index published per batch and
//                 cached by the producer (back-pressure); the consumer waits
//                 on the slot's sequence, so a message and its "ready" share
//                 a line (as a shmbus frame and its commit word do)
//   IndexRing     the classic SPSC ring (Lamport's, as folly's
//                 ProducerConsumerQueue or rigtorp's SPSCQueue): slots of
//                 the payload alone rounded up to 64-byte lines (64 B slots
//                 for 64 B), a producer index and a consumer index in lines
//                 of their own, each cached by the other side
//   SpscChannel   a ring of one kind per direction
//
// Concurrency: a ring's writer (BareWriter, IndexWriter) belongs to its one
// producer process, its reader (BareReader, IndexReader) to its one consumer.
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

// The classic ring: the producer publishes `written` after the slot, the
// consumer `consumed` after its batch; each caches the other's index and
// reloads it only when the cached value says empty (consumer) or full (producer).
struct IndexRing {
  struct alignas(128) Index {
    std::uint64_t v;  // its owner: store release; the other side: load acquire
    std::byte pad[120];
  };
  Index* written = nullptr;   // messages written (producer)
  Index* consumed = nullptr;  // messages consumed (consumer)
  std::byte* slots = nullptr;
  std::uint64_t slot_bytes = 0;
  std::uint64_t count = 0;

  static std::uint64_t slot_size(std::uint32_t payload) { return (payload + 63) & ~63ull; }
  static std::size_t bytes_for(std::uint32_t payload, std::uint64_t ring_bytes);
  static IndexRing at(std::byte* base, std::uint32_t payload, std::uint64_t ring_bytes);
  std::byte* payload(std::uint64_t index) const { return slots + index * slot_bytes; }
};

class IndexWriter {
 public:
  explicit IndexWriter(const IndexRing& r) : r_(r) {}
  bool try_write(const std::byte* src, std::size_t n) noexcept {
    if (written_ == limit_) {
      // SYNC POINT: pairs with the reader's release of `consumed`.
      limit_ = atomic(r_.consumed->v).load(std::memory_order_acquire) + r_.count;
      if (written_ == limit_) return false;
    }
    std::memcpy(r_.payload(index_), src, n);
    // SYNC POINT: publishes the slot; pairs with the reader's acquire of `written`.
    atomic(r_.written->v).store(++written_, std::memory_order_release);
    if (++index_ == r_.count) index_ = 0;
    return true;
  }

 private:
  IndexRing r_;
  std::uint64_t written_ = 0;
  std::uint64_t index_ = 0;
  std::uint64_t limit_ = 0;
};

class IndexReader {
 public:
  explicit IndexReader(const IndexRing& r) : r_(r) {}
  template <class F>
  std::uint32_t read(F&& f, std::uint32_t max) noexcept {
    if (consumed_ == available_) {
      available_ = atomic(r_.written->v).load(std::memory_order_acquire);
      if (consumed_ == available_) return 0;
    }
    std::uint32_t n = 0;
    while (n < max && consumed_ != available_) {
      f(static_cast<const std::byte*>(r_.payload(index_)));
      ++consumed_;
      if (++index_ == r_.count) index_ = 0;
      ++n;
    }
    atomic(r_.consumed->v).store(consumed_, std::memory_order_release);
    return n;
  }

 private:
  IndexRing r_;
  std::uint64_t consumed_ = 0;
  std::uint64_t available_ = 0;
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

// Ring: BareRing or IndexRing (RingKind picks its writer and reader).
template <class Ring>
struct RingKind;
template <>
struct RingKind<BareRing> {
  using Writer = BareWriter;
  using Reader = BareReader;
  static constexpr const char* kName = "bare SPSC ring";
};
template <>
struct RingKind<IndexRing> {
  using Writer = IndexWriter;
  using Reader = IndexReader;
  static constexpr const char* kName = "bare index ring";
};

template <class Ring>
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
  using Writer = typename RingKind<Ring>::Writer;
  using Reader = typename RingKind<Ring>::Reader;
  std::size_t one_;
  SharedMemory mem_;
  Ring ping_, pong_;
  std::vector<std::byte> msg_;
  // A writes ping and reads pong; B the other way round.
  std::optional<Writer> writer_;
  std::optional<Reader> reader_;
};
extern template class SpscChannel<BareRing>;
extern template class SpscChannel<IndexRing>;

}  // namespace shmbus::bench
