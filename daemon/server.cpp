// daemon/server.cpp — see server.hpp.
#include "server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "control/acl.hpp"
#include "control/client.hpp"
#include "log/topic_files.hpp"
#include "shm/file.hpp"
#include "shm/name.hpp"
#include "shm/process.hpp"
#include "spill.hpp"
#include "supervise.hpp"

namespace shmbus::daemon {
namespace {

std::atomic<bool> g_stderr{true};  // the spiller logs from its thread

// epoll data: id << 3 | kind.
enum Kind : std::uint64_t {
  kListen = 0,
  kSocket = 1,
  kPidfd = 2,
  kSignal = 3,
  kService = 4,  // id: the service's index
  kReapTimer = 5
};
std::uint64_t tag(std::uint64_t id, Kind k) {
  return id << 3 | k;
}

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// The peer's groups as the kernel recorded them when it connected
// (SO_PEERGROUPS, like SO_PEERCRED): not /proc/<pid>/status read later, which
// shows the groups the process has by then (it may have changed them, or
// exited and had its pid reused). A kernel without SO_PEERGROUPS (before
// 4.13) grants by the primary gid alone.
std::vector<gid_t> peer_groups(int sock, gid_t gid) {
  std::vector<gid_t> out{gid};
  std::vector<gid_t> groups(64);
  for (int tries = 0; tries < 4; ++tries) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      out.insert(out.end(), groups.begin(), groups.begin() + len / sizeof(gid_t));
      break;
    }
    if (errno != ERANGE) break;
    groups.resize(len / sizeof(gid_t) + 1);
  }
  return out;
}

// Whether a slot in `state` is its owner's: Active, or Evicted (taken from a
// slow consumer by the daemon, but its owner's until it leaves or dies).
bool held_by_owner(log::SlotState state) {
  return state == log::SlotState::Active || state == log::SlotState::Evicted;
}

// How an existing ring's geometry differs from `options`; nullopt: it does not.
std::optional<std::string> geometry_difference(const log::Ring& ring, const TopicOptions& options) {
  auto differs = [](const char* what, std::uint64_t has, std::uint64_t wanted) {
    return std::string(what) + " " + std::to_string(has) + ", not " + std::to_string(wanted);
  };
  if (ring.partitions() != options.partitions)
    return differs("partitions", ring.partitions(), options.partitions);
  if (ring.segment_bytes() != options.segment_bytes)
    return differs("segment_bytes", ring.segment_bytes(), options.segment_bytes);
  if (ring.capacity() != options.segment_bytes * options.segment_count)
    return differs("capacity", ring.capacity(), options.segment_bytes * options.segment_count);
  if (ring.policy() != options.policy)
    return differs("policy", static_cast<std::uint64_t>(ring.policy()),
                   static_cast<std::uint64_t>(options.policy));
  if (ring.alignment() != options.frame_alignment)
    return differs("alignment", ring.alignment(), options.frame_alignment);
  return std::nullopt;
}

// Sets owner, group and mode of one file (never following a link).
Outcome own(const std::string& path, const control::Acl& acl) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Error{errno, errno_text(path.c_str())};
  Outcome r = Done{};
  if (::fchown(fd, acl.owner_uid, acl.group_gid) != 0 || ::fchmod(fd, acl.mode) != 0)
    r = Error{errno, errno_text(path.c_str())};
  ::close(fd);
  return r;
}

}  // namespace

void log_to_stderr(bool on) {
  g_stderr = on;
}

void logf(const char* level, const std::string& line) {
  if (!g_stderr) {
    const int prio = level[0] == 'e' ? LOG_ERR : level[0] == 'w' ? LOG_WARNING : LOG_INFO;
    ::syslog(prio, "%s", line.c_str());
    return;
  }
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  ::gmtime_r(&ts.tv_sec, &t);
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &t);
  std::fprintf(stderr, "%s.%06ldZ shmbusd[%d] %s: %s\n", when, ts.tv_nsec / 1000, ::getpid(), level,
               line.c_str());
}

Server::Server(Config config) : config_(std::move(config)) {}

Server::~Server() {
  for (auto& [id, c] : clients_) {
    if (c.sock >= 0) ::close(c.sock);
    if (c.pidfd >= 0) ::close(c.pidfd);
  }
  if (listen_ >= 0) {
    ::close(listen_);
    ::unlink(socket_path_.c_str());
  }
  if (signals_ >= 0) ::close(signals_);
  if (reap_timer_ >= 0) ::close(reap_timer_);
  for (int fd : service_timers_) ::close(fd);
  if (epoll_ >= 0) ::close(epoll_);
}

Outcome Server::add_topic(const std::string& name, TopicOptions options, int numa,
                          const control::Acl& acl, bool adopt) {
  options.mode = acl.mode;
  if (numa >= 0) options.placement = {Placement::Kind::Node, numa};
  // Recorded as Creating before any file exists: a daemon that dies half-way
  // leaves an entry that tells its successor to remove the files.
  const bool fresh = ::access(log::ring_path(dir_, name, 0).c_str(), F_OK) != 0;
  if (fresh) {
    if (auto ok = record_topic(name, options, numa, acl, control::EntryState::Creating); !ok)
      return ok.error();
  }
  auto forget = [&] {
    if (fresh) registry_->erase(name);
  };
  bool adopted = false;
  if (auto made = log::create_topic_files(dir_, name, options); !made) {
    // A configured topic whose files exist (a restarted daemon) is adopted
    // if its geometry is the configured one; clients created it never.
    forget();
    if (!adopt || made.error().code != EEXIST) return made.error();
    auto first = log::Ring::open(dir_, name, 0, false, false);
    if (!first) return first.error();
    if (auto differs = geometry_difference(*first, options))
      return Error{EEXIST,
                   log::ring_path(dir_, name, 0) + " exists with another geometry: " + *differs};
    adopted = true;
  }
  auto t = std::make_unique<Topic>();
  t->name = name;
  t->options = options;
  t->numa_node = numa;
  t->acl = acl;
  for (std::uint32_t p = 0; p < options.partitions; ++p) {
    Outcome owned = own(log::ring_path(dir_, name, p), acl);
    if (owned) owned = own(log::cursor_path(dir_, name, p), acl);
    auto ring =
        owned ? log::Ring::open(dir_, name, p, true, false) : Result<log::Ring>(owned.error());
    if (!ring) {
      if (!adopted) {
        (void)log::remove_topic_files(dir_, name);
        forget();
      }
      return ring.error();
    }
    t->rings.push_back(std::move(ring.value()));
  }
  if (auto ok = record_topic(name, options, numa, acl, control::EntryState::Live); !ok) {
    if (!adopted) {
      (void)log::remove_topic_files(dir_, name);
      forget();
    }
    return ok.error();
  }
  topics_[name] = std::move(t);
  topics_changed();
  return Done{};
}

Outcome Server::start() {
  if (auto ok = shm::check_name("bus", config_.bus); !ok) return ok.error();
  dir_ = shm::bus_directory(config_.bus);
  if (auto ok = shm::make_directory(dir_); !ok) return ok.error();
  for (const std::string& path : shm::sweep_abandoned_creations(dir_))
    logf("warning", "removed " + path + ", left by a creator that died before naming it");
  if (auto ok = adopt_registry(); !ok) return ok.error();
  for (const auto& t : config_.topics) {
    // Adopted from the registry too: the configuration's ACL wins, its
    // geometry must match the files'.
    topics_.erase(t.name);
    quarantined_.erase(t.name);
    if (auto ok = add_topic(t.name, t.options, t.numa_node, t.acl, true); !ok)
      return Error{ok.error().code, "topic " + t.name + ": " + ok.error().message +
                                        " (delete its files or fix the configuration)"};
    logf("info", "topic " + t.name + " (" + std::to_string(t.options.partitions) +
                     " partitions) from the configuration is ready");
  }

  socket_path_ =
      config_.socket.empty() ? control::default_socket_path(config_.bus) : config_.socket;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof(addr.sun_path))
    return Error{ENAMETOOLONG, "socket path " + socket_path_ + " is too long"};
  std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());
  const auto slash = socket_path_.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    // The socket's directory is searchable by all: the ACL, not the path, decides.
    const std::string parent = socket_path_.substr(0, slash);
    if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST)
      return Error{errno, errno_text(parent.c_str())};
  }
  // A live daemon answers; a stale socket file from a dead one is replaced.
  if (auto probe = control::Connection::connect(socket_path_, ""); probe)
    return Error{EADDRINUSE, "another shmbusd serves " + socket_path_};
  ::unlink(socket_path_.c_str());

  listen_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_ < 0) return Error{errno, errno_text("socket")};
  if (::bind(listen_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0)
    return Error{errno, errno_text(socket_path_.c_str())};
  ::chmod(socket_path_.c_str(), 0666);
  if (::listen(listen_, 128) != 0) return Error{errno, errno_text("listen")};

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  signals_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (signals_ < 0 || epoll_ < 0) return Error{errno, errno_text("signalfd/epoll")};
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag(0, kListen);
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, listen_, &ev);
  ev.data.u64 = tag(0, kSignal);
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, signals_, &ev);
  watch_slot_holders();
  if (auto ok = start_timers(); !ok) return ok;
  logf("info",
       "bus " + config_.bus + ": shared memory in " + dir_ + ", control socket " + socket_path_);
  return Done{};
}

int Server::run() {
  for (auto& s : services_) s->start();
  epoll_event events[64];
  for (;;) {
    const int n = ::epoll_wait(epoll_, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      logf("error", errno_text("epoll_wait"));
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      const std::uint64_t id = events[i].data.u64 >> 3;
      switch (static_cast<Kind>(events[i].data.u64 & 7)) {
        case kListen:
          accept_clients();
          break;
        case kSocket:
          serve(id);
          break;
        case kPidfd:
          on_death(id);
          break;
        case kService:
          on_service_timer(id);
          break;
        case kReapTimer:
          on_reap_timer();
          break;
        case kSignal: {
          signalfd_siginfo si{};
          if (::read(signals_, &si, sizeof(si)) == sizeof(si)) {
            logf("info", std::string("stopping on ") + ::strsignal(static_cast<int>(si.ssi_signo)));
            return 0;
          }
          break;
        }
      }
    }
  }
}

namespace {
// A periodic timerfd; period zero disarms it.
void arm(int fd, std::chrono::nanoseconds period) {
  itimerspec its{};
  its.it_interval.tv_sec = static_cast<time_t>(period.count() / 1'000'000'000);
  its.it_interval.tv_nsec = static_cast<long>(period.count() % 1'000'000'000);
  its.it_value = its.it_interval;
  ::timerfd_settime(fd, 0, &its, nullptr);
}
// Reads a timerfd's expirations; false when it had none (spurious wake-up).
bool expired(int fd) {
  std::uint64_t expirations = 0;
  return ::read(fd, &expirations, sizeof expirations) == sizeof expirations;
}
}  // namespace

Outcome Server::start_timers() {
  services_.push_back(std::make_unique<SupervisionService>());
  services_.push_back(std::make_unique<SpillService>(dir_, config_.data_dir,
                                                     config_.spill_file_bytes));
  auto add_timer = [&](std::uint64_t data) -> Result<int> {
    const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) return Error{errno, errno_text("timerfd_create")};
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = data;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
    return fd;
  };
  auto reap = add_timer(tag(0, kReapTimer));
  if (!reap) return reap.error();
  reap_timer_ = *reap;
  arm(reap_timer_, kReapPeriod);
  for (std::size_t i = 0; i < services_.size(); ++i) {
    auto fd = add_timer(tag(i, kService));
    if (!fd) return fd.error();
    service_timers_.push_back(*fd);
  }
  topics_changed();
  return Done{};
}

void Server::topics_changed() {
  for (std::size_t i = 0; i < services_.size(); ++i) {
    services_[i]->served(topics_);
    if (i < service_timers_.size()) arm(service_timers_[i], services_[i]->period());
  }
}

void Server::on_service_timer(std::size_t i) {
  if (i >= services_.size() || !expired(service_timers_[i])) return;
  services_[i]->on_tick(topics_, Service::Clock::now());
}

void Server::on_reap_timer() {
  if (!expired(reap_timer_)) return;
  std::set<std::string> all;
  for (const auto& [name, t] : topics_) all.insert(name);
  reap(all);
}

void Server::accept_clients() {
  for (;;) {
    const int s = ::accept4(listen_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s < 0) {
      if (errno != EAGAIN && errno != EINTR) logf("warning", errno_text("accept"));
      return;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0) {
      logf("warning", "a client without credentials was refused");
      ::close(s);
      continue;
    }
    const std::uint64_t id = next_id_++;
    Client c;
    c.sock = s;
    c.pid = cred.pid;
    c.start_time = shm::start_time_of(cred.pid);
    c.uid = cred.uid;
    c.gid = cred.gid;
    c.groups = peer_groups(s, cred.gid);
    c.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, cred.pid, 0));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag(id, kSocket);
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, s, &ev);
    if (c.pidfd >= 0) {
      ev.data.u64 = tag(id, kPidfd);
      ::epoll_ctl(epoll_, EPOLL_CTL_ADD, c.pidfd, &ev);
    }
    clients_.emplace(id, std::move(c));
  }
}

std::uint32_t Server::reap(const std::set<std::string>& topics) {
  std::uint32_t freed = 0;
  for (const auto& name : topics) {
    auto it = topics_.find(name);
    if (it == topics_.end()) continue;
    std::uint32_t producers = 0, consumers = 0;
    for (const auto& ring : it->second->rings) {
      producers += ring.reap_dead_producers();
      consumers += ring.reap_dead_consumers(UINT64_MAX);
    }
    stats_.reaped_producers += producers;
    stats_.reaped_consumers += consumers;
    freed += producers + consumers;
    if (producers + consumers > 0)
      logf("info", "topic " + name + ": freed " + std::to_string(producers) +
                       " dead producer slot(s), " + std::to_string(consumers) +
                       " dead consumer slot(s)");
  }
  return freed;
}

void Server::on_death(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  Client& c = it->second;
  const std::uint32_t freed = reap(c.attached);
  // The pidfd turns readable as the process exits, a moment before /proc
  // shows it dead: reap() may still find it alive and leave its slots (seen
  // under load). The pidfd stays readable (level-triggered), so we come back
  // at once, for at most kExitGrace in case /proc never agrees.
  if (freed == 0 && holds_slot(c)) {
    const auto now = std::chrono::steady_clock::now();
    if (!c.exit_seen) c.exit_seen = now;
    if (now - *c.exit_seen < kExitGrace) return;
    logf("warning", "pid " + std::to_string(c.pid) +
                        " exited (its pidfd says so) but /proc still shows it running; "
                        "its slots are freed by a later reap");
  }
  // A client that left its slots first (closed its producers and consumers)
  // leaves nothing to free and nothing to log.
  if (freed > 0)
    logf("info", "client pid " + std::to_string(c.pid) + " died holding slots; they were freed");
  if (c.sock >= 0) ::close(c.sock);  // closing removes it from the epoll set
  if (c.pidfd >= 0) ::close(c.pidfd);
  clients_.erase(it);
}

// The socket closed (or failed). The process may still be exiting: its files
// close before it becomes a zombie, so reaping waits for the pidfd.
void Server::drop_socket(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  Client& c = it->second;
  if (c.sock >= 0) {
    ::close(c.sock);
    c.sock = -1;
  }
  reap(c.attached);  // in case it is already gone
  // A live process that left its slots (it closed a Producer or Consumer)
  // is forgotten now; one that still holds one is watched until it exits.
  if (c.pidfd < 0 || !holds_slot(c)) {
    if (c.pidfd >= 0) ::close(c.pidfd);  // closing removes it from the epoll set
    clients_.erase(it);
  }
}

bool Server::holds_slot(const Client& c) const {
  const auto pid = static_cast<std::uint32_t>(c.pid);
  // Any taken state; a holder that has not stamped the slot yet (start time
  // 0, just after it took the slot) by its pid alone.
  auto owned = [&](std::uint64_t& control, std::uint64_t& stamp) {
    const auto [k, h] = log::read_holder(control, stamp);
    return log::state_of(k) != log::SlotState::Free && h.pid == pid &&
           (h.start_time == 0 || h.start_time == c.start_time);
  };
  for (const std::string& name : c.attached) {
    auto it = topics_.find(name);
    if (it == topics_.end()) continue;
    for (const log::Ring& ring : it->second->rings) {
      for (std::uint32_t i = 0; i < ring.max_producers(); ++i) {
        log::ProducerSlot& s = ring.producer_slot(i);
        if (owned(s.control, s.stamp)) return true;
      }
      for (std::uint32_t i = 0; i < ring.max_consumers(); ++i) {
        log::CursorSlot& s = ring.cursor_slot(i);
        if (owned(s.control, s.stamp)) return true;
      }
    }
  }
  return false;
}

bool Server::send(Client& c, const control::Message& reply, const int* fds, int nfds) {
  const auto bytes = control::encode(reply);
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 2)] = {};
  if (nfds > 0) {
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<unsigned>(nfds));
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<unsigned>(nfds));
    std::memcpy(CMSG_DATA(cm), fds, sizeof(int) * static_cast<unsigned>(nfds));
  }
  // Never block the conductor: a client that does not read its replies is dropped.
  const ssize_t n = ::sendmsg(c.sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
  return n == static_cast<ssize_t>(bytes.size());
}

void Server::serve(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end() || it->second.sock < 0) return;
  Client& c = it->second;
  std::vector<std::byte>& buf = buf_;
  for (int round = 0; round < 64; ++round) {  // then let others have a turn
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 16)];
    iovec iov{buf.data(), buf.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof(cbuf);
    const ssize_t n = ::recvmsg(c.sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    // Descriptors sent to us are never wanted.
    for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); n >= 0 && cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t k = 0; k < count; ++k) {
        int f;
        std::memcpy(&f, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
        ::close(f);
      }
    }
    if (n <= 0) {  // EOF (or an empty datagram, which is as good as a hang-up) or an error
      drop_socket(id);
      return;
    }
    ++stats_.requests;
    auto d = control::decode(std::span(buf.data(), static_cast<std::size_t>(n)),
                             (mh.msg_flags & MSG_TRUNC) != 0, c.hello, false);
    control::Message reply;
    int fds[2] = {-1, -1};
    int nfds = 0;
    if (!d.ok) {
      reply = control::error_reply(d.error.request_id, d.error.code, d.error.text);
    } else {
      reply = handle(c, d.message, fds, nfds);
    }
    if (reply.type == control::MsgType::Error) ++stats_.errors;
    const bool sent = send(c, reply, fds, nfds);
    for (int k = 0; k < nfds; ++k) ::close(fds[k]);
    if (!sent) {
      logf("warning",
           "client pid " + std::to_string(c.pid) + " does not read its replies; dropped");
      drop_socket(id);
      return;
    }
  }
}

bool Server::granted(const Client& c, const Topic& t, control::Role role) const {
  static_assert(sizeof(gid_t) == sizeof(std::uint32_t));
  return control::acl_grants(
      t.acl, c.uid,
      std::span<const std::uint32_t>(reinterpret_cast<const std::uint32_t*>(c.groups.data()),
                                     c.groups.size()),
      role);
}

control::Message Server::create_topic(const Client& c, const control::Message& req) {
  using control::ErrorCode;
  const auto id = req.request_id;
  if (auto ok = shm::check_name("topic", req.name); !ok)
    return control::error_reply(id, ErrorCode::Invalid, ok.error().message);
  if (auto bad = check_topic(req.options, req.acl, config_.max_topic_bytes))
    return control::error_reply(id, ErrorCode::Invalid, *bad);
  if (c.uid != 0) {
    if (req.acl.owner_uid != c.uid)
      return control::error_reply(id, ErrorCode::Denied,
                                  "only root may create a topic owned by another user");
    if (std::find(c.groups.begin(), c.groups.end(), req.acl.group_gid) == c.groups.end())
      return control::error_reply(id, ErrorCode::Denied,
                                  "acl group is not one of the caller's groups");
  }
  if (topics_.count(req.name) != 0)
    return control::error_reply(id, ErrorCode::Exists, "topic " + req.name + " exists");
  if (topics_.size() >= 4096)
    return control::error_reply(id, ErrorCode::Invalid, "too many topics (4096)");
  if (auto ok = add_topic(req.name, req.options, req.numa_node, req.acl, false); !ok)
    return control::error_reply(id,
                                ok.error().code == EEXIST ? ErrorCode::Exists : ErrorCode::Internal,
                                ok.error().message);
  logf("info", "topic " + req.name + " created by pid " + std::to_string(c.pid) + " (uid " +
                   std::to_string(c.uid) + ")");
  control::Message ok;
  ok.type = control::MsgType::Ok;
  ok.request_id = id;
  return ok;
}

control::Message Server::handle(Client& c, const control::Message& req, int fds[2], int& nfds) {
  using control::ErrorCode;
  using control::MsgType;
  control::Message reply;
  reply.type = MsgType::Ok;
  reply.request_id = req.request_id;
  auto error = [&](ErrorCode code, std::string text) {
    return control::error_reply(req.request_id, code, std::move(text));
  };
  auto find = [&](const std::string& name) -> Topic* {
    auto it = topics_.find(name);
    return it == topics_.end() ? nullptr : it->second.get();
  };
  if (auto refused = refuse_quarantined(req)) return *refused;
  switch (req.type) {
    case MsgType::Hello:
      c.hello = true;
      reply.pid = static_cast<std::uint32_t>(::getpid());
      reply.name = config_.bus;
      return reply;
    case MsgType::CreateTopic:
      return create_topic(c, req);
    case MsgType::DeleteTopic: {
      const auto q = quarantined_.find(req.name);
      Topic* t = find(req.name);
      if (t == nullptr && q == quarantined_.end()) return delete_unknown_topic(c, req);
      const std::uint32_t owner = t != nullptr ? t->acl.owner_uid : q->second.record.acl.owner_uid;
      if (c.uid != 0 && c.uid != owner)
        return error(ErrorCode::Denied, "only the topic's owner or root may delete it");
      if (auto ok = delete_topic(req.name); !ok)
        return error(ErrorCode::Internal, ok.error().message);
      logf("info", "topic " + req.name + " deleted by pid " + std::to_string(c.pid));
      return reply;
    }
    case MsgType::DescribeTopic: {
      Topic* t = find(req.name);
      if (t == nullptr) return error(ErrorCode::NotFound, "no topic " + req.name);
      // Described to those who may map it, as a producer or a consumer.
      if (!granted(c, *t, control::Role::Consumer) && !granted(c, *t, control::Role::Producer))
        return error(ErrorCode::Denied,
                     "uid " + std::to_string(c.uid) + " may not attach to " + req.name);
      reply.type = MsgType::Described;
      reply.options = t->options;
      reply.numa_node = t->numa_node;
      reply.acl = t->acl;
      for (const auto& r : t->rings) {
        control::PartitionStat p;
        p.tail = r.tail().load(std::memory_order_acquire);
        // Acquire: pairs with the slot owners' CAS to Active; a monitoring snapshot.
        for (std::uint32_t i = 0; i < r.max_producers(); ++i)
          p.producers +=
              log::state_of(
                  log::atomic(r.producer_slot(i).control).load(std::memory_order_acquire)) ==
              log::SlotState::Active;
        for (std::uint32_t i = 0; i < r.max_consumers(); ++i)
          p.consumers +=
              log::state_of(
                  log::atomic(r.cursor_slot(i).control).load(std::memory_order_acquire)) ==
              log::SlotState::Active;
        reply.partitions.push_back(p);
      }
      return reply;
    }
    case MsgType::ListTopics: {
      reply.type = MsgType::Listed;
      std::size_t bytes = control::kHeaderBytes + 4 + 1;
      // A page after req.name, in name order; the client asks for the next.
      for (auto it = topics_.upper_bound(req.name); it != topics_.end(); ++it) {
        const auto& [name, t] = *it;
        // Only the topics the peer may attach to, as DescribeTopic.
        if (!granted(c, *t, control::Role::Consumer) && !granted(c, *t, control::Role::Producer))
          continue;
        bytes += 2 + name.size();
        if (bytes > control::kMaxReply) {
          reply.more = true;
          break;
        }
        reply.names.push_back(name);
      }
      return reply;
    }
    case MsgType::AttachProducer:
    case MsgType::AttachConsumer: {
      const bool producer = req.type == MsgType::AttachProducer;
      const auto role = producer ? control::Role::Producer : control::Role::Consumer;
      Topic* t = find(req.name);
      if (t == nullptr) return error(ErrorCode::NotFound, "no topic " + req.name);
      if (req.partition >= t->options.partitions)
        return error(ErrorCode::NotFound,
                     "topic " + req.name + " has no partition " + std::to_string(req.partition));
      if (!granted(c, *t, role))
        return error(ErrorCode::Denied, "uid " + std::to_string(c.uid) + " may not attach to " +
                                            req.name + " as a " +
                                            (producer ? "producer" : "consumer"));
      const std::string rpath = log::ring_path(dir_, req.name, req.partition);
      const std::string cpath = log::cursor_path(dir_, req.name, req.partition);
      fds[0] = ::open(rpath.c_str(), (producer ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
      fds[1] = ::open(cpath.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
      nfds = 2;
      struct stat st {};
      if (fds[0] < 0 || fds[1] < 0 || ::fstat(fds[0], &st) != 0) {
        const std::string text = errno_text(rpath.c_str());
        for (int k = 0; k < 2; ++k)
          if (fds[k] >= 0) ::close(fds[k]);
        nfds = 0;
        return error(ErrorCode::Internal, text);
      }
      c.attached.insert(req.name);
      reply.type = MsgType::Attached;
      reply.partition = req.partition;
      reply.role = role;
      reply.ring_bytes = static_cast<std::uint64_t>(st.st_size);
      return reply;
    }
    case MsgType::Detach:
      // The slots are the client's to leave; the daemon only stops supervising
      // the topic for this client when nothing else of it is attached.
      if (c.attached.erase(req.name) == 0)
        return error(ErrorCode::NotFound, "not attached to " + req.name);
      return reply;
    case MsgType::Reattach:
      return reattach(c, req);
    case MsgType::Stats:
      reply.type = MsgType::StatsReply;
      reply.stats = stats_;
      for (const auto& s : services_) s->add_stats(reply.stats);
      reply.stats.clients = static_cast<std::uint32_t>(std::count_if(
          clients_.begin(), clients_.end(), [](const auto& idc) { return !idc.second.adopted; }));
      reply.stats.topics = static_cast<std::uint32_t>(topics_.size());
      return reply;
    default:
      return error(ErrorCode::UnknownType, "not a request");
  }
}

std::optional<control::Message> Server::refuse_quarantined(const control::Message& req) const {
  using control::MsgType;
  switch (req.type) {
    case MsgType::CreateTopic:
    case MsgType::DescribeTopic:
    case MsgType::AttachProducer:
    case MsgType::AttachConsumer:
    case MsgType::Reattach:
      break;
    default:
      return std::nullopt;
  }
  auto q = quarantined_.find(req.name);
  if (q == quarantined_.end()) return std::nullopt;
  return control::error_reply(req.request_id, control::ErrorCode::Quarantined,
                              "topic " + req.name + " is quarantined: " + q->second.reason +
                                  "; delete it (shmbus --bus " + config_.bus + " topic delete " +
                                  req.name + ") and create it again");
}

control::Message Server::delete_unknown_topic(const Client& c, const control::Message& req) {
  using control::ErrorCode;
  const auto id = req.request_id;
  if (auto ok = shm::check_name("topic", req.name); !ok)
    return control::error_reply(id, ErrorCode::Invalid, ok.error().message);
  const std::string first = log::ring_path(dir_, req.name, 0);
  struct stat st {};
  if (::lstat(first.c_str(), &st) != 0)
    return control::error_reply(id, ErrorCode::NotFound, "no topic " + req.name);
  if (c.uid != 0 && c.uid != st.st_uid)
    return control::error_reply(id, ErrorCode::Denied,
                                "only root or the owner of " + first + " may delete topic " +
                                    req.name + ", which shmbusd does not serve");
  if (auto ok = log::remove_topic_files(dir_, req.name); !ok && ok.error().code != ENOENT)
    return control::error_reply(id, ErrorCode::Internal, ok.error().message);
  logf("info", "files of topic " + req.name + ", which shmbusd did not serve, deleted by pid " +
                   std::to_string(c.pid));
  control::Message ok;
  ok.type = control::MsgType::Ok;
  ok.request_id = id;
  return ok;
}

// Marks the registry entry Deleting, removes the files, frees the entry: a
// daemon that dies in between leaves an entry its successor finishes. The
// topic leaves the table and the registry only once its files are all gone:
// a delete that fails half-way (a file that cannot be removed) leaves the
// topic where it was, Deleting in the registry, so that a retried delete
// (or the next daemon) finishes it.
Outcome Server::delete_topic(const std::string& name) {
  const auto q = quarantined_.find(name);
  if (q != quarantined_.end()) {
    const control::TopicRecord& r = q->second.record;
    if (auto ok = record_topic(name, r.options, r.numa_node, r.acl, control::EntryState::Deleting);
        !ok)
      return ok.error();
  } else {
    const Topic& t = *topics_.at(name);
    if (auto ok = record_topic(name, t.options, t.numa_node, t.acl, control::EntryState::Deleting);
        !ok)
      return ok.error();
  }
  if (auto ok = log::remove_topic_files(dir_, name); !ok && ok.error().code != ENOENT)
    return Error{ok.error().code, "topic " + name + " is half deleted (" + ok.error().message +
                                      "); deleting it again finishes it"};
  if (q != quarantined_.end())
    quarantined_.erase(q);
  else
    topics_.erase(name);
  for (auto& s : services_) s->deleted(name);
  topics_changed();
  registry_->erase(name);
  return Done{};
}

// --- restart -------------------------------------------------------------

Outcome Server::record_topic(const std::string& name, const TopicOptions& options, int numa,
                             const control::Acl& acl, control::EntryState state) {
  control::TopicRecord r;
  r.state = state;
  r.name = name;
  r.options = options;
  r.numa_node = numa;
  r.acl = acl;
  return registry_->put(r);
}

Outcome Server::adopt_registry() {
  auto opened = control::Registry::open_or_create(control::registry_path(dir_));
  if (!opened)
    return Error{opened.error().code,
                 opened.error().message +
                     " (move the file away to start with an empty registry; topic files stay)"};
  registry_ = std::move(opened).value();
  auto records = registry_->read(true);
  if (!records) return records.error();
  for (const control::TopicRecord& r : *records) {
    if (r.state != control::EntryState::Live) {
      // A create or a delete that a dead daemon left half-done: neither was
      // acknowledged to anybody, so finish it as a delete.
      auto gone = log::remove_topic_files(dir_, r.name);
      if (!gone && gone.error().code != ENOENT) return gone.error();
      registry_->erase(r.name);
      logf("warning", "topic " + r.name + ": removed what a half-done create or delete left");
      continue;
    }
    auto quarantine = [&](const std::string& reason) {
      logf("error", "topic " + r.name + " is quarantined: " + reason +
                        "; it is not served until it is deleted (shmbus --bus " + config_.bus +
                        " topic delete " + r.name + "), which removes its files");
      quarantined_[r.name] = Quarantined{r, reason};
    };
    if (auto bad = check_topic(r.options, r.acl, UINT64_MAX)) {
      quarantine("its entry in registry " + registry_->path() + " is invalid: " + *bad);
      continue;
    }
    if (::access(log::ring_path(dir_, r.name, 0).c_str(), F_OK) != 0) {
      registry_->erase(r.name);
      logf("warning", "topic " + r.name + " is in the registry but its files are gone; dropped");
      continue;
    }
    if (auto ok = add_topic(r.name, r.options, r.numa_node, r.acl, true); !ok) {
      quarantine(ok.error().message);
      continue;
    }
    logf("info", "topic " + r.name + " (" + std::to_string(r.options.partitions) +
                     " partitions) adopted from the registry");
  }
  return Done{};
}

void Server::watch_slot_holders() {
  for (const auto& [name, t] : topics_) {
    reap({name});  // owners that died while no daemon watched
    for (const log::Ring& ring : t->rings) {
      for (std::uint32_t i = 0; i < ring.max_producers(); ++i) {
        log::ProducerSlot& s = ring.producer_slot(i);
        watch_holder(s.control, s.stamp, name);
      }
      for (std::uint32_t i = 0; i < ring.max_consumers(); ++i) {
        log::CursorSlot& s = ring.cursor_slot(i);
        watch_holder(s.control, s.stamp, name);
      }
    }
  }
  std::size_t adopted = 0;
  for (const auto& [id, c] : clients_) adopted += c.adopted;
  if (adopted > 0)
    logf("info", "watching " + std::to_string(adopted) +
                     " process(es) that hold slots from before this daemon");
}

void Server::watch_holder(std::uint64_t& control, std::uint64_t& stamp, const std::string& topic) {
  const auto [k, h] = log::read_holder(control, stamp);
  if (!held_by_owner(log::state_of(k)) || h.pid == log::kNoHolder) return;  // parked: nobody
  const std::uint32_t pid = h.pid;
  const std::uint64_t start_time = h.start_time;
  for (auto& [id, c] : clients_) {
    if (c.adopted && static_cast<std::uint32_t>(c.pid) == pid) {
      c.attached.insert(topic);
      return;
    }
  }
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  // The pidfd names the process only if it is still the one that took the
  // slot: its start time is checked after the pidfd pinned the pid.
  if (pidfd < 0 || shm::start_time_of(static_cast<pid_t>(pid)) != start_time) {
    if (pidfd >= 0) ::close(pidfd);
    reap({topic});  // died since the scan
    return;
  }
  const std::uint64_t id = next_id_++;
  Client c;
  c.pid = static_cast<pid_t>(pid);
  c.start_time = start_time;
  c.pidfd = pidfd;
  c.adopted = true;
  c.attached.insert(topic);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag(id, kPidfd);
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, pidfd, &ev);
  clients_.emplace(id, std::move(c));
}

control::Message Server::reattach(Client& c, const control::Message& req) {
  using control::ErrorCode;
  const auto id = req.request_id;
  auto it = topics_.find(req.name);
  if (it == topics_.end())
    return control::error_reply(id, ErrorCode::NotFound, "no topic " + req.name);
  const Topic& t = *it->second;
  const bool producer = req.role == control::Role::Producer;
  const std::string what = std::string(producer ? "producer" : "consumer") + " slot in " +
                           req.name + "." + std::to_string(req.partition);
  if (req.partition >= t.rings.size())
    return control::error_reply(
        id, ErrorCode::NotFound,
        "topic " + req.name + " has no partition " + std::to_string(req.partition));
  if (!granted(c, t, req.role))
    return control::error_reply(id, ErrorCode::Denied,
                                "uid " + std::to_string(c.uid) + " may not hold a " + what);
  const log::Ring& ring = t.rings[req.partition];
  const auto pid = static_cast<std::uint32_t>(c.pid);
  // An Evicted slot is still its owner's: a consumer evicted across a restart re-announces it.
  auto holds = [&](std::uint64_t& control, std::uint64_t& stamp) {
    const auto [k, h] = log::read_holder(control, stamp);
    return held_by_owner(log::state_of(k)) && h.pid == pid && h.start_time == c.start_time;
  };
  bool held = false;
  for (std::uint32_t i = 0; producer && !held && i < ring.max_producers(); ++i) {
    log::ProducerSlot& s = ring.producer_slot(i);
    held = holds(s.control, s.stamp);
  }
  for (std::uint32_t i = 0; !producer && !held && i < ring.max_consumers(); ++i) {
    log::CursorSlot& s = ring.cursor_slot(i);
    held = holds(s.control, s.stamp);
  }
  if (!held)
    return control::error_reply(id, ErrorCode::NotFound,
                                "pid " + std::to_string(c.pid) + " holds no " + what);
  c.attached.insert(req.name);
  // Its socket supervises it now: the watch from the start-up scan goes.
  for (auto w = clients_.begin(); w != clients_.end(); ++w) {
    if (!w->second.adopted || w->second.pid != c.pid) continue;
    w->second.attached.erase(req.name);
    if (w->second.attached.empty()) {
      ::close(w->second.pidfd);  // closing removes it from the epoll set
      clients_.erase(w);
    }
    break;
  }
  logf("info", "pid " + std::to_string(c.pid) + " re-announced its " + what);
  control::Message ok;
  ok.type = control::MsgType::Ok;
  ok.request_id = id;
  return ok;
}

}  // namespace shmbus::daemon
