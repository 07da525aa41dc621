// lib/shm/process.hpp — who owns a slot in shared memory, and whether that
// owner is still alive.
//
// A pid alone is not an identity (pids are reused), so slots name the pid and
// the process's start time from /proc/<pid>/stat (lib/log/layout.hpp: the pid
// in the slot's control word, the start time in its stamp). A slot's owner is dead when
// no process has that pid, or the process with that pid started at another time.
// Producers and consumers of a bus must share a PID namespace: a pid from
// another namespace means nothing here.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace shmbus::shm {

struct ProcessId {
  std::uint32_t pid = 0;
  std::uint64_t start_time = 0;  // clock ticks since boot (field 22 of /proc/<pid>/stat)
};

// The calling process (cached after the first call; refreshed after fork).
ProcessId self() noexcept;

// Start time of `pid`, or 0 when there is no such process.
std::uint64_t start_time_of(pid_t pid) noexcept;

// True while the process `id` names still runs (zombies count as dead). When
// /proc hides the process (hidepid), it counts as alive: only proof kills.
bool alive(const ProcessId& id) noexcept;

}  // namespace shmbus::shm
