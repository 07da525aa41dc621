// lib/control/link.hpp — keeps shmbusd supervising this process's slots across
// daemon restarts.
//
// A Producer or Consumer attached through shmbusd holds a slot that the
// daemon supervises for as long as the connection stays open. The process's
// supervision link is one background thread, started by the first Supervision
// and living until the process exits: it polls the connections it was handed
// (the daemon never writes to them unasked, so any readiness is a hang-up),
// and when one drops it reconnects with backoff (10 ms, doubling to 500 ms,
// for as long as the slot is held, unless the daemon answers that the topic
// or the slot is gone: NotFound) and re-announces the slot with Reattach;
// each attempt waits at most the client timeout (client.hpp), so a stopped
// daemon delays the link, never hangs it.
// The data path never waits for any of this: a producer or consumer touches
// only shared memory; the link thread owns the sockets.
//
// After fork() the child closes its copies of the parent's connections (the
// daemon sees them close when the parent closes them) and starts a link of
// its own when it needs one; the parent's link (its thread did not survive
// the fork) is left alone.
//
// Concurrency: Supervision objects may be created and destroyed from any
// thread; one object is used by one thread at a time.
#pragma once

#include <cstdint>
#include <string>

#include "control/client.hpp"
#include "control/protocol.hpp"

namespace shmbus::control {

// What the link re-announces after a reconnection.
struct HeldSlot {
  std::string socket_path;
  std::string topic;
  std::uint32_t partition = 0;
  Role role = Role::Producer;
};

class Link;

// A slot under the link's supervision; destroying it closes the connection
// (the daemon then stops supervising the slot, which its owner has left).
class Supervision {
 public:
  Supervision() = default;  // none: the embedded path, without a daemon
  // Hands `connection`, on which the slot was attached, to the link.
  static Supervision start(Connection connection, HeldSlot slot);
  Supervision(Supervision&& o) noexcept;
  Supervision& operator=(Supervision&& o) noexcept;
  Supervision(const Supervision&) = delete;
  Supervision& operator=(const Supervision&) = delete;
  ~Supervision();

  bool active() const noexcept { return link_ != nullptr; }

 private:
  Supervision(Link* link, std::uint64_t id) : link_(link), id_(id) {}
  void stop() noexcept;
  Link* link_ = nullptr;
  std::uint64_t id_ = 0;
};

}  // namespace shmbus::control
