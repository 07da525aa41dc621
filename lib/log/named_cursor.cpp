#include "log/named_cursor.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>

#include "shm/name.hpp"

namespace shmbus::log {

Outcome check_cursor_name(std::string_view name) {
  if (auto ok = shm::check_name("cursor", name); !ok) return ok.error();
  if (name.size() > kMaxCursorName)
    return Error{EINVAL, "cursor name '" + std::string(name) + "' is too long: at most " +
                             std::to_string(kMaxCursorName) + " bytes"};
  return Done{};
}

std::string slot_name(const CursorSlot& s) {
  char bytes[kCursorNameWords * 8];
  for (std::size_t i = 0; i < kCursorNameWords; ++i) {
    const std::uint64_t w =
        atomic(const_cast<std::uint64_t&>(s.name[i])).load(std::memory_order_relaxed);
    std::memcpy(bytes + 8 * i, &w, 8);
  }
  const std::string_view all(bytes, sizeof bytes);
  const std::size_t end = all.find('\0');
  std::string name(all.substr(0, end));
  // A name is NUL-terminated and zero-padded; anything else is damage.
  const bool padded =
      end != std::string_view::npos && all.find_first_not_of('\0', end) == std::string_view::npos;
  if (!padded || (!name.empty() && !check_cursor_name(name)))
    return "?" + std::to_string(name.size());
  return name;
}

void write_slot_name(CursorSlot& s, std::string_view name) noexcept {
  char bytes[kCursorNameWords * 8] = {};
  std::memcpy(bytes, name.data(), std::min(name.size(), kMaxCursorName));
  for (std::size_t i = 0; i < kCursorNameWords; ++i) {
    std::uint64_t w;
    std::memcpy(&w, bytes + 8 * i, 8);
    atomic(s.name[i]).store(w, std::memory_order_relaxed);
  }
}

std::optional<NamedSlot> find_named(const Ring& r, std::string_view name) {
  for (std::uint32_t i = 0; i < r.max_consumers(); ++i) {
    CursorSlot& s = r.cursor_slot(i);
    // Acquire: the name was written before the CAS to ACTIVE (release).
    const std::uint64_t c = atomic(s.control).load(std::memory_order_acquire);
    if (state_of(c) == SlotState::Active && slot_name(s) == name) return NamedSlot{&s, c};
  }
  return std::nullopt;
}

bool name_taken_elsewhere(const Ring& r, const CursorSlot& mine, std::string_view name) {
  // Our name's stores before the other slots' loads (layout.hpp: Dekker).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (std::uint32_t i = 0; i < r.max_consumers(); ++i) {
    CursorSlot& s = r.cursor_slot(i);
    if (&s == &mine) continue;
    const std::uint64_t c = atomic(s.control).load(std::memory_order_seq_cst);
    const SlotState state = state_of(c);
    if (state != SlotState::Active && state != SlotState::Joining) continue;
    if (slot_name(s) != name) continue;
    if (state == SlotState::Active || holder_alive(c, s.stamp)) return true;
  }
  return false;
}

void park(CursorSlot& mine, std::uint64_t held) noexcept {
  const std::uint64_t parked = make_control(SlotState::Active, generation_of(held) + 1, kNoHolder);
  // Fails only if the slot is no longer ours (damage): then it is not ours to park.
  atomic(mine.control).compare_exchange_strong(held, parked, std::memory_order_acq_rel);
}

Outcome delete_named(const Ring& r, std::string_view name) {
  if (auto ok = check_cursor_name(name); !ok) return ok.error();
  const std::string where = "cursor '" + std::string(name) + "' on " + r.name();
  for (;;) {
    const std::optional<NamedSlot> found = find_named(r, name);
    if (!found) return Error{ENOENT, where + " does not exist"};
    CursorSlot& s = *found->slot;
    if (holder_alive(found->control, s.stamp))
      return Error{EBUSY, where + " is held by pid " + std::to_string(pid_of(found->control)) +
                              ": close that consumer first"};
    const std::optional<std::uint64_t> taken =
        take_slot(s.control, s.stamp, found->control, shm::self());
    if (!taken) continue;  // taken over or deleted meanwhile: look again
    write_slot_name(s, "");
    std::uint64_t joining = *taken;
    atomic(s.control).compare_exchange_strong(joining, with_state(joining, SlotState::Free),
                                              std::memory_order_acq_rel);
    return Done{};
  }
}

}  // namespace shmbus::log
