// daemon/service.hpp — the seam between shmbusd's conductor (server.hpp) and
// its services: supervision (supervise.hpp) first; the spiller and the group
// coordinator are the next ones.
//
// A service runs on the conductor's one thread, between its other events,
// and must not block it. The conductor owns the epoll set and the topics;
// a service sees the topics, never the clients or the control socket:
//
//   conductor                                  service
//   topics created, adopted or deleted    ->   served(topics); then period()
//   its timerfd expires (every period())  ->   on_tick(topics, now)
//   a Stats request                       ->   add_stats(stats)
//
// period() is read again after every served(): a service that has nothing
// to do for the topics now served returns zero, and its timer is disarmed.
// Descriptors to watch (the spiller's io_uring) join this interface with
// their first user.
#pragma once

#include <chrono>

#include "control/protocol.hpp"
#include "topic.hpp"

namespace shmbus::daemon {

class Service {
 public:
  using Clock = std::chrono::steady_clock;
  virtual ~Service() = default;
  // The topics served changed; `topics` is the whole new set.
  virtual void served(const Topics& topics) = 0;
  // How often on_tick runs; zero: never.
  virtual std::chrono::nanoseconds period() const = 0;
  virtual void on_tick(const Topics& topics, Clock::time_point now) = 0;
  // Adds what this service counts to a Stats reply.
  virtual void add_stats(control::DaemonStats& stats) const = 0;
};

}  // namespace shmbus::daemon
