// lib/log/cursor_join.hpp — taking a cursor slot: an anonymous consumer's
// (join) or a durable named cursor's (hold_named), by the join protocol of
// layout.hpp ("Back-pressure", "Durable named cursors"). The consumer and
// shmbusd's spiller both take their slots here.
#pragma once

#include <cstdint>
#include <string_view>

#include "log/ring.hpp"
#include "shmbus/status.hpp"

namespace shmbus::log {

// A slot this process holds, and its control word as it took it.
struct HeldSlot {
  CursorSlot* slot = nullptr;
  std::uint64_t control = 0;
};

// Takes a free slot at position t0, carrying `name` ("" = anonymous):
// Free -> Joining (invisible to producers), fill it in, Joining -> Active
// (seq_cst). A named slot yields (NameTaken) to another slot of its name.
// No free slot: slots of dead consumers are taken back first, then NoSlot.
enum class Joined : std::uint8_t { Yes, NameTaken, NoSlot };
Joined join_cursor(const Ring& r, std::uint64_t t0, std::string_view name, HeldSlot& out) noexcept;

// A named cursor's slot: the one of its name, taken over (its holder dead
// or parked; `resumed` then, and the slot kept its position and never
// stopped gating), else a new one at t0. EBUSY when a live process holds it.
struct HeldName {
  HeldSlot held;
  bool resumed = false;
};
Result<HeldName> hold_named(const Ring& r, std::string_view name, std::uint64_t t0);

// "all slots taken" for r.
Error no_cursor_slot(const Ring& r);

}  // namespace shmbus::log
