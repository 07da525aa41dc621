// lib/control/client.cpp — see client.hpp.
#include "control/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace shmbus::control {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string default_socket_path(std::string_view bus) {
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  std::string dir = xdg != nullptr && *xdg != '\0' ? std::string(xdg) + "/shmbus" : "/run/shmbus";
  return dir + "/" + std::string(bus) + ".sock";
}

milliseconds default_timeout() {
  const char* env = std::getenv("SHMBUS_DAEMON_TIMEOUT_MS");
  const long long ms = env != nullptr ? std::atoll(env) : 0;
  return ms > 0 ? milliseconds(ms) : milliseconds(5000);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Result<Connection> Connection::connect(const std::string& socket_path, std::string_view client_name,
                                       milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path))
    return Error{ENAMETOOLONG, "socket path " + socket_path + " is too long"};
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  Connection c;
  c.socket_path_ = socket_path;
  c.timeout_ = timeout;
  // Non-blocking: every wait below is a poll with the deadline.
  c.fd_ = Fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (c.fd_.get() < 0) return Error{errno, std::string("socket: ") + std::strerror(errno)};
  const Deadline deadline = Clock::now() + timeout;
  // A full backlog (a daemon that stopped accepting) is EAGAIN on an AF_UNIX
  // socket, with nothing to poll for: retried until the deadline.
  while (::connect(c.fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(1));
      continue;
    }
    if (e == EAGAIN) return c.timed_out();
    return Error{e, "cannot connect to shmbusd at " + socket_path + ": " + std::strerror(e) +
                        " (is shmbusd running?)"};
  }
  if (!client_name.empty()) {
    Message hello;
    hello.type = MsgType::Hello;
    hello.name = std::string(client_name.substr(0, kMaxName));
    auto r = c.call(std::move(hello));
    if (!r) return r.error();
    if (r->message.type != MsgType::Ok)
      return Error{EPROTO, "shmbusd refused hello: " + r->message.text};
    c.daemon_pid_ = r->message.pid;
  }
  return c;
}

Error Connection::timed_out() const {
  return Error{ETIMEDOUT, "shmbusd at " + socket_path_ + " did not answer within " +
                              std::to_string(timeout_.count()) + " ms (is it stopped or hung?)"};
}

Outcome Connection::wait_ready(short events, Deadline deadline) const {
  for (;;) {
    const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return timed_out();
    pollfd p{fd_.get(), events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<decltype(left)>(left, INT32_MAX)));
    if (n > 0) return Done{};  // ready, or an error or hang-up the next call reports
    if (n < 0 && errno != EINTR)
      return Error{errno, std::string("poll on shmbusd's socket: ") + std::strerror(errno)};
  }
}

Outcome Connection::send_raw(const void* data, std::size_t bytes) {
  return send_until(data, bytes, Clock::now() + timeout_);
}

Result<Reply> Connection::receive() {
  return receive_until(Clock::now() + timeout_);
}

Outcome Connection::send_until(const void* data, std::size_t bytes, Deadline deadline) {
  for (;;) {
    const ssize_t n = ::send(fd_.get(), data, bytes, MSG_NOSIGNAL);
    if (n >= 0) return Done{};
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      if (auto ready = wait_ready(POLLOUT, deadline); !ready) return ready.error();
      continue;
    }
    const int e = errno;
    return Error{e, std::string("send to shmbusd: ") + std::strerror(e)};
  }
}

Result<Reply> Connection::receive_until(Deadline deadline) {
  std::vector<std::byte>& buf = buf_;
  buf.resize(kMaxReply + 1);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  iovec iov{buf.data(), buf.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  ssize_t n;
  while ((n = ::recvmsg(fd_.get(), &mh, MSG_CMSG_CLOEXEC)) < 0) {
    if (errno == EINTR) continue;
    if (errno != EAGAIN)
      return Error{errno, std::string("receive from shmbusd: ") + std::strerror(errno)};
    if (auto ready = wait_ready(POLLIN, deadline); !ready) return ready.error();
  }
  Reply reply;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      reply.fds.emplace_back(f);
    }
  }
  if (n == 0) return Error{ECONNRESET, "shmbusd closed the connection"};
  auto d = decode(std::span(buf.data(), static_cast<std::size_t>(n)),
                  (mh.msg_flags & MSG_TRUNC) != 0, true, true);
  if (!d.ok) return Error{EPROTO, "bad reply from shmbusd: " + d.error.text};
  reply.message = std::move(d.message);
  return reply;
}

Result<Reply> Connection::call(Message request) {
  request.request_id = next_id_++;
  const auto bytes = encode(request);
  const Deadline deadline = Clock::now() + timeout_;
  if (auto sent = send_until(bytes.data(), bytes.size(), deadline); !sent) return sent.error();
  auto r = receive_until(deadline);
  if (r && r->message.request_id != request.request_id)
    return Error{EPROTO, "reply to request " + std::to_string(r->message.request_id) +
                             " while waiting for " + std::to_string(request.request_id)};
  return r;
}

}  // namespace shmbus::control
