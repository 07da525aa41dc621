// lib/control/client.hpp — a blocking client connection to shmbusd: connect,
// say hello, send one request and wait for its reply (with the file
// descriptors an Attached reply carries).
//
// Every wait is bounded: connecting, sending a request and receiving its
// reply each give up after the connection's timeout (default_timeout()) with
// ETIMEDOUT and an error that names the socket, so that a stopped or hung
// daemon never hangs its clients.
//
// Concurrency: one thread at a time per Connection (requests and replies
// pair up in order).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "control/protocol.hpp"
#include "shmbus/status.hpp"

namespace shmbus::control {

// $XDG_RUNTIME_DIR/shmbus/<bus>.sock when XDG_RUNTIME_DIR is set, else
// /run/shmbus/<bus>.sock.
std::string default_socket_path(std::string_view bus);

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const noexcept { return fd_; }
  int release() noexcept {
    const int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_ = -1;
};

struct Reply {
  Message message;
  std::vector<Fd> fds;  // SCM_RIGHTS that came with the reply
};

// How long a client waits for shmbusd: SHMBUS_DAEMON_TIMEOUT_MS when set to
// a positive number, else 5 s.
std::chrono::milliseconds default_timeout();

class Connection {
 public:
  // Connects to `socket_path`; with a non-empty `client_name`, also says
  // Hello. Each step waits at most `timeout`.
  static Result<Connection> connect(const std::string& socket_path,
                                    std::string_view client_name = "client",
                                    std::chrono::milliseconds timeout = default_timeout());

  // Sends `request` (its request_id is filled in) and waits for the reply,
  // at most the timeout for both. An Error reply is a Reply too
  // (message.type == MsgType::Error); the Result fails only when the socket
  // does or the daemon does not answer in time (ETIMEDOUT).
  Result<Reply> call(Message request);

  // Raw datagrams, for tests; each waits at most the timeout.
  Outcome send_raw(const void* data, std::size_t bytes);
  Result<Reply> receive();

  int fd() const noexcept { return fd_.get(); }
  std::uint32_t daemon_pid() const noexcept { return daemon_pid_; }

 private:
  using Deadline = std::chrono::steady_clock::time_point;
  Outcome send_until(const void* data, std::size_t bytes, Deadline deadline);
  Result<Reply> receive_until(Deadline deadline);
  // Waits until the socket is ready for `events` (POLLIN or POLLOUT).
  Outcome wait_ready(short events, Deadline deadline) const;
  Error timed_out() const;

  Fd fd_;
  std::string socket_path_;
  std::chrono::milliseconds timeout_{0};
  std::uint32_t next_id_ = 1;
  std::uint32_t daemon_pid_ = 0;
  std::vector<std::byte> buf_;  // receive buffer, kMaxReply + 1 once used
};

}  // namespace shmbus::control
