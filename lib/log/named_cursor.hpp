// lib/log/named_cursor.hpp — durable named cursors: cursor slots that belong
// to a name rather than to a process (the protocol: layout.hpp, "Durable
// named cursors"). The consumer creates or takes over its slot with these;
// Topic::delete_cursor deletes one; describe reads the names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "log/ring.hpp"
#include "shm/process.hpp"
#include "shmbus/status.hpp"

namespace shmbus::log {

// The durable named cursor of shmbusd's spiller (daemon/spill.hpp). A
// durable topic is created with it parked at position 0 (Ring::create), so
// that `block` producers are held back from the first byte, before the
// spiller takes it over.
inline constexpr const char* kSpillCursor = "shmbus.spill";

// 1..kMaxCursorName of [A-Za-z0-9._-], not starting with '.'.
Outcome check_cursor_name(std::string_view name);

// The name a slot carries ("" = anonymous). Bytes that are not a name
// (damage) read as "?" followed by their count, which no valid name equals.
std::string slot_name(const CursorSlot& s);
// While holding the slot Joining: stores `name`, zero-padded.
void write_slot_name(CursorSlot& s, std::string_view name) noexcept;

// The ACTIVE slot that carries `name`, and its control word as seen.
struct NamedSlot {
  CursorSlot* slot;
  std::uint64_t control;
};
std::optional<NamedSlot> find_named(const Ring& r, std::string_view name);

// A creator holding `mine` Joining with `name` written: whether another
// slot carries the name (ACTIVE, or Joining with a live holder), so that it
// must yield. Issues the seq_cst fence of the protocol first.
bool name_taken_elsewhere(const Ring& r, const CursorSlot& mine, std::string_view name);

// The holder leaves its named slot `mine` (control word `held`): ACTIVE
// with no holder, still gating at its position.
void park(CursorSlot& mine, std::uint64_t held) noexcept;

// Deletes the named cursor: ENOENT when no slot carries the name, EBUSY
// when a live process holds it.
Outcome delete_named(const Ring& r, std::string_view name);

}  // namespace shmbus::log
