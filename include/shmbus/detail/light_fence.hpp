// shmbus/detail/light_fence.hpp — the cheap side of the asymmetric fence
// (lib/shm/asymmetric_fence.hpp has the scheme): a compiler barrier in a
// process registered for membarrier, else a full fence; and the producer's
// half of the pairing it serves. Here because the common case of
// Producer::offer is compiled into applications.
#pragma once

#include <atomic>
#include <cstdint>

namespace shmbus::detail {

// `registered`: the library's flag that this process is registered.
inline void light_fence(const std::atomic<bool>& registered) noexcept {
  if (registered.load(std::memory_order_relaxed))
    std::atomic_signal_fence(std::memory_order_seq_cst);
  else
    std::atomic_thread_fence(std::memory_order_seq_cst);
}

// A producer's last steps for a frame: store its commit word (release: the
// frame's bytes before it; consumers acquire-load it), then the light fence,
// then load the count of consumers asleep on the futex. True when one must
// be woken. Every publish of a ready frame goes through here (the library's
// Ring::publish and the inline offer).
inline bool commit_then_check_sleepers(std::uint64_t& commit, std::uint64_t word,
                                       const std::atomic<bool>& registered,
                                       std::uint32_t& waiters) noexcept {
  std::atomic_ref<std::uint64_t>(commit).store(word, std::memory_order_release);
  light_fence(registered);
  return std::atomic_ref<std::uint32_t>(waiters).load(std::memory_order_relaxed) != 0;
}

}  // namespace shmbus::detail
