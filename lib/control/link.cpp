// lib/control/link.cpp — see link.hpp.
#include "control/link.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace shmbus::control {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

class Link {
 public:
  Link() : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    std::thread([this] { run(); }).detach();
  }

  std::uint64_t add(Connection connection, HeldSlot slot) {
    std::lock_guard lock(mutex_);
    const std::uint64_t id = next_id_++;
    Entry& e = entries_[id];
    e.slot = std::move(slot);
    e.connection = std::move(connection);
    changed();
    return id;
  }

  void remove(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    entries_.erase(id);  // closes its connection
    changed();
  }

  // fork(): the prepare handler locks the link, the parent's unlocks it.
  void lock_for_fork() { mutex_.lock(); }
  void unlock_after_fork() { mutex_.unlock(); }
  // The child's handler: closes the child's copies of the parent's sockets
  // (the daemon must see a connection close when the parent closes it, not
  // when a child that never execs exits) and of the wake-up eventfd. The
  // link is dead in the child from then on: its thread was not forked.
  void close_in_forked_child() {
    for (auto& [id, e] : entries_) e.connection.reset();
    ::close(wake_);
    mutex_.unlock();
  }

 private:
  static constexpr milliseconds kFirstRetry{10};
  static constexpr milliseconds kMaxRetry{500};

  struct Entry {
    HeldSlot slot;
    std::optional<Connection> connection;  // empty: dropped, reconnecting
    bool topic_gone = false;  // the daemon serves no such slot (any more): never retried
    Clock::time_point next_attempt{};
    milliseconds backoff = kFirstRetry;
  };

  // Under mutex_: the set of connections changed; the poller rebuilds its set.
  void changed() {
    ++changes_;
    const std::uint64_t one = 1;
    (void)!::write(wake_, &one, sizeof one);
  }

  [[noreturn]] void run() {
    std::vector<pollfd> fds;
    std::vector<std::uint64_t> ids;
    for (;;) {
      fds.assign(1, pollfd{wake_, POLLIN, 0});
      ids.clear();
      int timeout = -1;
      std::uint64_t seen;
      {
        std::lock_guard lock(mutex_);
        const auto now = Clock::now();
        for (const auto& [id, e] : entries_) {
          if (e.topic_gone) continue;
          if (e.connection) {
            fds.push_back(pollfd{e.connection->fd(), POLLIN, 0});
            ids.push_back(id);
            continue;
          }
          const auto wait = std::chrono::ceil<milliseconds>(e.next_attempt - now).count();
          const int ms = static_cast<int>(std::clamp<decltype(wait)>(wait, 0, kMaxRetry.count()));
          timeout = timeout < 0 ? ms : std::min(timeout, ms);
        }
        seen = changes_;
      }
      (void)::poll(fds.data(), fds.size(), timeout);
      if (fds[0].revents != 0) {
        std::uint64_t drained;
        (void)!::read(wake_, &drained, sizeof drained);
      }
      {
        std::lock_guard lock(mutex_);
        // The descriptors polled are still the entries' only if nothing changed.
        for (std::size_t k = 0; changes_ == seen && k < ids.size(); ++k) {
          if (fds[k + 1].revents == 0) continue;
          Entry& e = entries_.at(ids[k]);
          e.connection.reset();  // the daemon hung up (it never writes unasked)
          e.next_attempt = Clock::now();
          e.backoff = kFirstRetry;
        }
      }
      reconnect_due();
    }
  }

  // Dials the daemon for each dropped entry whose time has come; outside the
  // mutex, so that a Supervision being destroyed never waits for a connect.
  void reconnect_due() {
    std::vector<std::pair<std::uint64_t, HeldSlot>> due;
    {
      std::lock_guard lock(mutex_);
      const auto now = Clock::now();
      for (const auto& [id, e] : entries_)
        if (!e.connection && !e.topic_gone && e.next_attempt <= now) due.emplace_back(id, e.slot);
    }
    for (auto& [id, slot] : due) {
      Reannounced dialed = reannounce(slot);
      std::lock_guard lock(mutex_);
      auto it = entries_.find(id);
      if (it == entries_.end() || it->second.connection) continue;  // left meanwhile
      Entry& e = it->second;
      if (dialed.connection) {
        e.connection = std::move(dialed.connection);
        e.backoff = kFirstRetry;
        changed();
      } else if (dialed.topic_gone) {
        e.topic_gone = true;
      } else {
        e.next_attempt = Clock::now() + e.backoff;
        e.backoff = std::min(e.backoff * 2, kMaxRetry);
      }
    }
  }

  struct Reannounced {
    std::optional<Connection> connection;  // the daemon accepted the re-announcement
    bool topic_gone = false;               // it answered NotFound or Quarantined
  };

  // Dials the daemon and re-announces `slot`. NotFound (the topic, the
  // partition or our slot in it is gone) and Quarantined (the topic's files
  // are damaged) are final; any other failure (no daemon yet, a refusal) is
  // retried.
  static Reannounced reannounce(const HeldSlot& slot) {
    auto c = Connection::connect(slot.socket_path,
                                 slot.role == Role::Producer ? "producer" : "consumer");
    if (!c) return {};
    Message m;
    m.type = MsgType::Reattach;
    m.name = slot.topic;
    m.partition = slot.partition;
    m.role = slot.role;
    auto r = c->call(std::move(m));
    if (!r) return {};
    if (r->message.type == MsgType::Error)
      return {std::nullopt,
              r->message.code == ErrorCode::NotFound || r->message.code == ErrorCode::Quarantined};
    if (r->message.type != MsgType::Ok) return {};
    return {std::move(c).value(), false};
  }

  std::mutex mutex_;
  std::map<std::uint64_t, Entry> entries_;
  std::uint64_t next_id_ = 1;
  std::uint64_t changes_ = 0;
  const int wake_;
};

namespace {

// The process's link. Never destroyed: its thread runs until the process
// exits. A forked child closes its copies of the parent's connections and
// forgets (and leaks) the parent's link, whose thread it does not have; the
// parent's Supervision objects in the child then point at a link that is not
// current, and leave it alone. Lock order: g_mutex, then the link's mutex.
std::mutex g_mutex;
Link* g_link = nullptr;

Link& current_link() {
  static std::once_flag once;
  std::call_once(once, [] {
    ::pthread_atfork(
        [] {
          g_mutex.lock();
          if (g_link != nullptr) g_link->lock_for_fork();
        },
        [] {
          if (g_link != nullptr) g_link->unlock_after_fork();
          g_mutex.unlock();
        },
        [] {
          if (g_link != nullptr) g_link->close_in_forked_child();
          g_link = nullptr;
          g_mutex.unlock();
        });
  });
  std::lock_guard lock(g_mutex);
  if (g_link == nullptr) g_link = new Link();
  return *g_link;
}

}  // namespace

Supervision Supervision::start(Connection connection, HeldSlot slot) {
  Link& link = current_link();
  return Supervision(&link, link.add(std::move(connection), std::move(slot)));
}

Supervision::Supervision(Supervision&& o) noexcept
    : link_(std::exchange(o.link_, nullptr)), id_(o.id_) {}

Supervision& Supervision::operator=(Supervision&& o) noexcept {
  if (this != &o) {
    stop();
    link_ = std::exchange(o.link_, nullptr);
    id_ = o.id_;
  }
  return *this;
}

Supervision::~Supervision() {
  stop();
}

void Supervision::stop() noexcept {
  if (link_ == nullptr) return;
  {
    std::lock_guard lock(g_mutex);
    if (link_ != g_link) {  // a parent's link, seen from a forked child
      link_ = nullptr;
      return;
    }
  }
  link_->remove(id_);
  link_ = nullptr;
}

}  // namespace shmbus::control
