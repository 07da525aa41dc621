// lib/log/spin.hpp — the spinning half of the wait strategies.
//
// BusySpin pauses the core (the x86 `pause` keeps the spin loop from flooding
// the memory system and leaves the sibling hyperthread its share); SpinYield
// and Futex spin `kSpins` times and then yield the CPU on every further call.
// The futex half (sleeping) lives in Consumer::poll_wait, which owns the
// waiter count.
#pragma once

#include <sched.h>

#include <cstdint>

#include "shmbus/options.hpp"

namespace shmbus::log {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class Backoff {
 public:
  static constexpr std::uint32_t kSpins = 2000;
  explicit Backoff(WaitStrategy w) noexcept : strategy_(w) {}
  void pause() noexcept {
    if (strategy_ == WaitStrategy::BusySpin || spins_ < kSpins) {
      ++spins_;
      cpu_relax();
    } else {
      ::sched_yield();
    }
  }
  bool spun_out() const noexcept { return spins_ >= kSpins; }

 private:
  WaitStrategy strategy_;
  std::uint32_t spins_ = 0;
};

}  // namespace shmbus::log
