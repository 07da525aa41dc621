// daemon/server.hpp — shmbusd's conductor: one thread, one epoll set holding
// the listening control socket, every client's socket and pidfd, and a
// signalfd (SIGTERM/SIGINT stop it cleanly).
//
// Per client it keeps the peer's SO_PEERCRED identity and the partitions it
// attached. When a client dies (its pidfd becomes readable; a socket EOF from
// a client that still holds a slot of a topic it attached is followed up
// through the pidfd, because the socket closes before the process is
// reaped), the conductor pads over the open claims of dead producers and
// frees dead consumers' cursor slots on every partition that client
// attached, at once. A socket EOF from a client that left its slots (a
// closed Producer or Consumer of a live process) forgets the client at once,
// pidfd and all.
//
// The daemon is never on the data path: it hands out file descriptors and
// supervises; producers and consumers go on if it dies.
//
// Restart: every topic, whether from the configuration or created over the
// socket, is recorded in the bus's registry (lib/control/registry.hpp). A
// starting daemon adopts what the registry lists (finishing a create or a
// delete that a dead daemon left half-done), reaps the slots of clients that
// died while no daemon ran, and watches the pidfd of every process that still
// holds a producer or cursor slot (an "adopted" client, without a socket).
// Clients reconnect by themselves and re-announce their slots (Reattach);
// from then on their socket's client supervises them. A registry topic that
// cannot be adopted (a file damaged or missing, or of another geometry) is
// quarantined: logged as an error naming the file and what is wrong, left
// out of ListTopics, and refused (ErrorCode::Quarantined) to every request
// but DeleteTopic, which removes it; the rest of the bus is served.
//
// DeleteTopic also removes the files of a topic the daemon does not know
// (created on the embedded path while no daemon ran), for root or their owner.
//
// Services (service.hpp) run on the same thread, each on its own timerfd:
// supervision (supervise.hpp) scans every topic for hung producers and slow
// consumers at a 32nd of the shortest configured timeout. A timer of the
// conductor's own reaps every topic each kReapPeriod, so that a dead
// client's slots never wait for an event.
//
// Concurrency: Server is used by the one thread that calls run().
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config.hpp"
#include "control/protocol.hpp"
#include "control/registry.hpp"
#include "log/ring.hpp"
#include "service.hpp"
#include "topic.hpp"

namespace shmbus::daemon {

// Log lines: to stderr ("--foreground") or syslog.
void log_to_stderr(bool on);
void logf(const char* level, const std::string& line);

class Server {
 public:
  explicit Server(Config config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Creates the bus directory, the configured topics and the socket.
  Outcome start();
  // Serves until SIGTERM or SIGINT. Returns the exit code.
  int run();

  const std::string& socket_path() const { return socket_path_; }

 private:
  struct Client {
    int sock = -1;
    int pidfd = -1;
    pid_t pid = 0;
    std::uint64_t start_time = 0;  // of pid, when it connected: slots carry it
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // gid and the supplementary groups
    bool hello = false;
    bool adopted = false;            // no socket: a slot holder found by a starting daemon
    std::set<std::string> attached;  // topic names
    // When its pidfd first said it exited while /proc still showed it (on_death).
    std::optional<std::chrono::steady_clock::time_point> exit_seen;
  };
  static constexpr std::chrono::seconds kExitGrace{1};

  void accept_clients();
  void serve(std::uint64_t id);
  void drop_socket(std::uint64_t id);
  void on_death(std::uint64_t id);
  // Frees dead owners' slots on these topics; returns how many.
  std::uint32_t reap(const std::set<std::string>& topics);
  // Whether c's process holds a slot (in any state but Free) of a topic it attached.
  bool holds_slot(const Client& c) const;
  bool send(Client& c, const control::Message& reply, const int* fds = nullptr, int nfds = 0);
  control::Message handle(Client& c, const control::Message& req, int fds[2], int& nfds);
  control::Message create_topic(const Client& c, const control::Message& req);
  // Creates a topic; with `adopt`, takes over existing files of the same geometry.
  Outcome add_topic(const std::string& name, TopicOptions options, int numa,
                    const control::Acl& acl, bool adopt);
  bool granted(const Client& c, const Topic& t, control::Role role) const;
  // Deletes a served or quarantined topic.
  Outcome delete_topic(const std::string& name);
  // DeleteTopic of a name the daemon neither serves nor quarantines.
  control::Message delete_unknown_topic(const Client& c, const control::Message& req);
  // The error for any request but DeleteTopic naming a quarantined topic;
  // nullopt when `name` is not quarantined.
  std::optional<control::Message> refuse_quarantined(const control::Message& req) const;

  // --- restart: the registry, and supervision of clients a dead daemon served ---
  // Opens (or creates) the registry and adopts the topics it lists.
  Outcome adopt_registry();
  // Records a topic in the registry in `state`.
  Outcome record_topic(const std::string& name, const TopicOptions& options, int numa,
                       const control::Acl& acl, control::EntryState state);
  // Reaps slots whose owners died unwatched, then watches each live holder.
  void watch_slot_holders();
  // Watches the process holding a slot (by its control word and stamp).
  void watch_holder(std::uint64_t& control, std::uint64_t& stamp, const std::string& topic);
  // Reattach: the peer re-announces a slot it holds.
  control::Message reattach(Client& c, const control::Message& req);
  // --- services (service.hpp) and the reap timer, each a timerfd in the epoll set ---
  Outcome start_timers();
  // Tells the services of the topics now served and re-arms their timers.
  void topics_changed();
  void on_service_timer(std::size_t i);
  // Every kReapPeriod: a dead client's slots must not wait for an event (a
  // pidfd seen before /proc agreed, a producer that died waiting for room
  // and could not be padded then).
  static constexpr std::chrono::milliseconds kReapPeriod{100};
  void on_reap_timer();

  Config config_;
  std::string socket_path_;
  std::string dir_;
  int epoll_ = -1;
  int listen_ = -1;
  int signals_ = -1;
  int reap_timer_ = -1;
  std::vector<std::unique_ptr<Service>> services_;
  std::vector<int> service_timers_;  // as services_
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, Client> clients_;
  Topics topics_;
  struct Quarantined {
    control::TopicRecord record;  // as the registry lists it
    std::string reason;           // why it could not be adopted
  };
  std::map<std::string, Quarantined> quarantined_;
  std::optional<control::Registry> registry_;
  control::DaemonStats stats_;
  std::vector<std::byte> buf_ = std::vector<std::byte>(control::kMaxMessage + 1);
};

}  // namespace shmbus::daemon
