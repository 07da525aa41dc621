// lib/shm/clock.hpp — the library half of the frame clock
// (shmbus/detail/clock.hpp): calibrating the time stamp counter once per
// process, and taking anchors.
#pragma once

#include <cstdint>

#include "shmbus/detail/clock.hpp"

namespace shmbus::shm {

std::int64_t realtime_ns() noexcept;

// The time now. Takes a new anchor for `c` when now lies outside its window
// (the first call: c is empty), so that the inline extrapolate() answers
// for the next few ms.
std::int64_t clock_now(detail::TscClock& c) noexcept;

// Whether stamps come from the counter here (an invariant TSC), not from
// clock_gettime on every message.
bool counter_clock() noexcept;

}  // namespace shmbus::shm
