// lib/client/attach.hpp — how a Producer or Consumer gets its partition.
//
// When shmbusd runs for the bus (its socket exists: SHMBUS_SOCKET, or
// control::default_socket_path(bus)), the client asks it: the daemon checks
// the topic's ACL against the peer's credentials and hands over descriptors
// (the log read-only for consumers), and supervises this process for as
// long as the connection stays open; the connection goes to the process's
// supervision link (control/link.hpp), which reconnects to a restarted
// daemon and re-announces the slot. Without a daemon, the client maps the
// files of the bus directory itself: the embedded path that tests and
// single-user set-ups use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "control/client.hpp"
#include "control/link.hpp"
#include "log/ring.hpp"

namespace shmbus::client {

// The control socket of the bus's daemon (SHMBUS_SOCKET, else
// control::default_socket_path(bus)) when it exists; nullopt: no daemon, the
// embedded path.
std::optional<std::string> daemon_socket(std::string_view bus);

struct Attachment {
  log::Ring ring;
  control::Supervision daemon;  // inactive on the embedded path
};

Result<Attachment> attach(std::string_view bus, std::string_view topic, std::uint32_t partition,
                          bool producer, bool prefault);

}  // namespace shmbus::client
