#include "shm/asymmetric_fence.hpp"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace shmbus::shm {

std::atomic<bool> light_fences{false};

namespace {
long membarrier(int command) noexcept {
  return ::syscall(__NR_membarrier, command, 0, 0);
}
// A forked child starts with full fences until it registers itself: we do not
// rely on the kernel's registration being inherited (asymmetric_fence.hpp).
void forget_registration_in_child() noexcept {
  light_fences.store(false, std::memory_order_relaxed);
}
}  // namespace

bool enable_light_fences() noexcept {
  static std::once_flag atfork;
  std::call_once(atfork, [] { ::pthread_atfork(nullptr, nullptr, forget_registration_in_child); });
  if (light_fences.load(std::memory_order_relaxed)) return true;
  if (membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) return false;
  light_fences.store(true, std::memory_order_relaxed);
  return true;
}

bool heavy_fence() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}

}  // namespace shmbus::shm
