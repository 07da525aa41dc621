// shmbus/detail/light_fence.hpp — the cheap side of the asymmetric fence
// (lib/shm/asymmetric_fence.hpp has the scheme): a compiler barrier in a
// process registered for membarrier, else a full fence. Here because the
// common case of Producer::offer is compiled into applications.
#pragma once

#include <atomic>

namespace shmbus::detail {

// `registered`: the library's flag that this process is registered.
inline void light_fence(const std::atomic<bool>& registered) noexcept {
  if (registered.load(std::memory_order_relaxed))
    std::atomic_signal_fence(std::memory_order_seq_cst);
  else
    std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace shmbus::detail
