// lib/control/acl.hpp — who may attach to a topic: its ACL (control/protocol.hpp,
// Acl) against a peer's credentials, as shmbusd decides it for every attach,
// describe and list.
#pragma once

#include <cstdint>
#include <span>

#include "control/protocol.hpp"

namespace shmbus::control {

// Whether a peer with `uid` and `groups` (its gid and supplementary groups)
// may attach in `role`: root and the owner always; else a user listed for
// the role, a member of a group listed for it, or a member of the topic's
// group when the mode's group bit for the role is set (0040 read: consumers,
// 0020 write: producers). Nothing else grants anything; the "other" bits of
// the mode never do.
bool acl_grants(const Acl& acl, std::uint32_t uid, std::span<const std::uint32_t> groups,
                Role role);

}  // namespace shmbus::control
