#include "log/cursor_join.hpp"

#include <cerrno>
#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "log/named_cursor.hpp"
#include "shm/process.hpp"

namespace shmbus::log {
namespace {

Joined join_once(const Ring& r, std::uint64_t t0, std::string_view name, HeldSlot& out) noexcept {
  const shm::ProcessId me = shm::self();
  for (std::uint32_t i = 0; i < r.max_consumers(); ++i) {
    CursorSlot& s = r.cursor_slot(i);
    const std::uint64_t c = atomic(s.control).load(std::memory_order_acquire);
    if (state_of(c) != SlotState::Free) continue;
    const std::optional<std::uint64_t> taken = take_slot(s.control, s.stamp, c, me);
    if (!taken) continue;
    std::uint64_t joining = *taken;
    atomic(s.position).store(t0, std::memory_order_relaxed);
    write_slot_name(s, name);
    if (!name.empty() && name_taken_elsewhere(r, s, name)) {
      atomic(s.control).compare_exchange_strong(joining, with_state(joining, SlotState::Free),
                                                std::memory_order_acq_rel);
      return Joined::NameTaken;
    }
    const std::uint64_t mine = with_state(joining, SlotState::Active);
    // Reapers take only a dead holder's slot: this fails only on damage.
    if (!atomic(s.control).compare_exchange_strong(joining, mine, std::memory_order_seq_cst))
      continue;
    out = {&s, mine};
    return Joined::Yes;
  }
  return Joined::NoSlot;
}

constexpr int kNameAttempts = 1000;

}  // namespace

Joined join_cursor(const Ring& r, std::uint64_t t0, std::string_view name, HeldSlot& out) noexcept {
  const Joined j = join_once(r, t0, name, out);
  if (j != Joined::NoSlot || r.reap_dead_consumers(UINT64_MAX) == 0) return j;
  return join_once(r, t0, name, out);
}

Result<HeldName> hold_named(const Ring& r, std::string_view name, std::uint64_t t0) {
  const std::string where = "cursor '" + std::string(name) + "' on " + r.name();
  std::minstd_rand pause(static_cast<std::uint32_t>(shm::self().pid));
  for (int attempt = 0; attempt < kNameAttempts; ++attempt) {
    if (const std::optional<NamedSlot> found = find_named(r, name)) {
      if (holder_alive(found->control, found->slot->stamp))
        return Error{EBUSY, where + " is held by pid " + std::to_string(pid_of(found->control)) +
                                " (a named cursor has one holder at a time)"};
      CursorSlot& s = *found->slot;
      if (const auto mine =
              take_slot(s.control, s.stamp, found->control, shm::self(), SlotState::Active))
        return HeldName{{&s, *mine}, true};
      continue;  // taken over or deleted meanwhile: look again
    }
    HeldSlot held;
    switch (join_cursor(r, t0, name, held)) {
      case Joined::Yes:
        return HeldName{held, false};
      case Joined::NoSlot:
        return no_cursor_slot(r);
      case Joined::NameTaken:  // a creator at the same time: one of us goes on
        std::this_thread::sleep_for(std::chrono::microseconds(10 + pause() % 1000));
        break;
    }
  }
  return Error{EAGAIN, where + ": other consumers kept creating it at the same time; try again"};
}

Error no_cursor_slot(const Ring& r) {
  return Error{EBUSY, "topic partition " + r.name() + " has all " +
                          std::to_string(r.max_consumers()) +
                          " consumer slots taken by live consumers (raise max_consumers)"};
}

}  // namespace shmbus::log
