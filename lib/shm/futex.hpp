// lib/shm/futex.hpp — sleep on / wake a 32-bit word in shared memory.
//
// Shared (not FUTEX_PRIVATE) futexes, because the sleeper and the waker are
// different processes mapping the same file. Callers keep a waiter count so
// that a waker makes the system call only when somebody sleeps.
#pragma once

#include <chrono>
#include <cstdint>

namespace shmbus::shm {

// `word` is a shared word that callers otherwise access through
// std::atomic_ref. Sleeps while `*word == expected`, at most `timeout` (negative: no limit).
// Returns on a wake, a timeout, a signal, or when the word already differs.
void futex_wait(std::uint32_t* word, std::uint32_t expected,
                std::chrono::nanoseconds timeout) noexcept;

// Wakes every sleeper on `word`.
void futex_wake_all(std::uint32_t* word) noexcept;

}  // namespace shmbus::shm
