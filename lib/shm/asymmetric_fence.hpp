// lib/shm/asymmetric_fence.hpp — a store-load (Dekker) pairing between a side
// that runs on every message and a side that runs rarely, with the cost moved
// to the rare side.
//
// The pairing it serves (log/layout.hpp, producer step 5; Consumer sleep):
//
//   producer, every publish            consumer, before each futex sleep
//   1 store commit word                1 waiters += 1 (a locked RMW)
//   2 light_fence()                    2 heavy_fence()
//   3 load waiters; if > 0: wake       3 load commit word; ready: do not sleep
//
// Each side needs its store (1) ordered before its load (3), or both loads may
// see the old values and the consumer sleeps through a commit. With a full
// fence on both sides that costs the producer an `mfence` per message, which
// waits for the store buffer to drain, i.e. for the lines of the frame just
// written to be owned again after the consumer read them (what it costs in
// 64 B throughput: README, "Performance", the "full fence" row).
//
// membarrier(2) moves that cost: MEMBARRIER_CMD_GLOBAL_EXPEDITED, issued by
// the consumer, runs a full barrier on every CPU that is running a thread of
// a process registered with MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED (a
// thread that is not running passed one when it was switched out). So a
// registered producer's side needs only a compiler barrier; the consumer pays
// one system call and, in a VM, an inter-processor interrupt (measured here:
// about 18 µs with a registered process spinning on the other CPU), once per
// sleep, next to a futex wake-up of 35-55 µs. The same scheme as liburcu's
// and folly's asymmetric barriers, across processes.
//
// The price is on the registered side too: each heavy fence interrupts every
// CPU running a thread of a registered process. Producer::open registers its
// process unless ProducerOptions::light_fence is off (include/shmbus/options.hpp).
//
// Registration belongs to the address space: exec drops it; a forked child
// inherits it on the kernels we know (6.x), but nothing documents that, so
// the child's flag is reset (an atfork handler) and it uses full fences until
// it registers itself. (So a child of a registered process may still take
// the heavy fences' interrupts, whatever its own producers' options.) Where
// membarrier is unavailable (old kernel, seccomp), registration fails and the
// producer keeps the full fence; a consumer whose heavy_fence() fails may
// miss a wake-up from a registered producer and so sleeps in short slices
// instead (Consumer).
#pragma once

#include <atomic>

#include "shmbus/detail/light_fence.hpp"

namespace shmbus::shm {

extern std::atomic<bool> light_fences;  // this process is registered

// Registers this process for heavy fences (idempotent); true when its light
// fences are compiler barriers from now on.
bool enable_light_fences() noexcept;

// The frequent side: a compiler barrier in a registered process, else a full fence.
inline void light_fence() noexcept {
  shmbus::detail::light_fence(light_fences);
}

// The rare side: a full fence here and in every running thread of every
// registered process. False when the system call failed (then only this
// thread's fence was issued).
bool heavy_fence() noexcept;

}  // namespace shmbus::shm
