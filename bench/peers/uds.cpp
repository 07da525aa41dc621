// Unix domain sockets: one SOCK_SEQPACKET pair (message boundaries kept) made
// in the parent; A reads and writes fds_[0], B fds_[1].
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "failure.hpp"
#include "peers.hpp"

namespace shmbus::bench::peers {
namespace {

class UdsChannel : public Channel {
 public:
  explicit UdsChannel(std::uint32_t size) : Channel("unix socket", size), buf_(size) {
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds_) != 0)
      fail(format("socketpair: %s", std::strerror(errno)));
  }
  ~UdsChannel() override {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  void open_ping() override { fd_ = fds_[0]; }
  void open_echo() override { fd_ = fds_[1]; }
  bool blocking() const override { return true; }
  void send(Direction, Bytes m) override {
    ssize_t n;
    do n = ::send(fd_, m.data(), m.size(), 0);
    while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(m.size()))
      fail(format("unix socket send: %s", std::strerror(errno)));
  }
  std::uint32_t receive(Direction, Receiver r, std::uint32_t) override {
    ssize_t n;
    do n = ::recv(fd_, buf_.data(), buf_.size(), 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) fail(format("unix socket recv: %s", n == 0 ? "closed" : std::strerror(errno)));
    r(Bytes(buf_.data(), static_cast<std::size_t>(n)));
    return 1;
  }

 private:
  int fds_[2];
  int fd_ = -1;
  std::vector<std::byte> buf_;
};

}  // namespace

std::unique_ptr<Channel> make_uds(std::uint32_t size) {
  return std::make_unique<UdsChannel>(size);
}

std::string unique_name(const char* prefix) {
  static int serial = 0;
  return format("%s%d-%d", prefix, static_cast<int>(::getpid()), serial++);
}

}  // namespace shmbus::bench::peers
