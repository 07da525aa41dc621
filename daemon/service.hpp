// daemon/service.hpp — the seam between shmbusd's conductor (server.hpp) and
// its services: supervision (supervise.hpp) first; the spiller and the group
// coordinator are the next ones.
//
// A service runs on the conductor's one thread, between its other events,
// and must not block it. The conductor owns the epoll set and the topics;
// a service sees the topics, never the clients or the control socket:
//
//   conductor                                  service
//   it begins serving (after daemonizing) ->   start()  (a service's own thread starts here)
//   topics created, adopted or deleted    ->   served(topics); then period()
//   a topic deleted (before served)       ->   deleted(name)
//   its timerfd expires (every period())  ->   on_tick(topics, now)
//   a Stats request                       ->   add_stats(stats)
//
// period() is read again after every served(): a service that has nothing
// to do for the topics now served returns zero, and its timer is disarmed.
// A service that does I/O (the spiller, spill.hpp) does it on a thread of
// its own, started by start(); served() and deleted() only post to it.
#pragma once

#include <chrono>
#include <string>

#include "control/protocol.hpp"
#include "topic.hpp"

namespace shmbus::daemon {

class Service {
 public:
  using Clock = std::chrono::steady_clock;
  virtual ~Service() = default;
  // The conductor begins serving; nothing forks after this.
  virtual void start() {}
  // The topics served changed; `topics` is the whole new set.
  virtual void served(const Topics& topics) = 0;
  // `topic` was deleted: what the service keeps for it goes too.
  virtual void deleted(const std::string& /*topic*/) {}
  // How often on_tick runs; zero: never.
  virtual std::chrono::nanoseconds period() const = 0;
  virtual void on_tick(const Topics& topics, Clock::time_point now) = 0;
  // Adds what this service counts to a Stats reply.
  virtual void add_stats(control::DaemonStats& stats) const = 0;
};

}  // namespace shmbus::daemon
