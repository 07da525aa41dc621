// ZeroMQ: one PAIR socket per side over ipc:// (A binds, B connects), both
// directions on it; blocking zmq_msg_send / zmq_msg_recv. The context (and
// its I/O thread) is made in each process after fork.
#include <zmq.h>

#include <cerrno>
#include <cstring>

#include "failure.hpp"
#include "peers.hpp"

namespace shmbus::bench::peers {
namespace {

[[noreturn]] void zmq_fail(const char* what) {
  fail(format("zeromq %s: %s", what, zmq_strerror(zmq_errno())));
}

class ZeromqChannel : public Channel {
 public:
  ZeromqChannel(std::uint32_t size, const std::string& dir)
      : Channel("zeromq ipc", size), endpoint_("ipc://" + dir + "/" + unique_name("zmq-")) {}
  void open_ping() override { open(true); }
  void open_echo() override { open(false); }
  void close() override {
    if (sock_ != nullptr) zmq_close(sock_);
    if (ctx_ != nullptr) zmq_ctx_term(ctx_);
    sock_ = ctx_ = nullptr;
  }
  bool blocking() const override { return true; }
  void send(Direction, Bytes m) override {
    while (zmq_send(sock_, m.data(), m.size(), 0) < 0)
      if (zmq_errno() != EINTR) zmq_fail("send");
  }
  std::uint32_t receive(Direction, Receiver r, std::uint32_t) override {
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (zmq_msg_recv(&msg, sock_, 0) < 0)
      if (zmq_errno() != EINTR) zmq_fail("recv");
    r(Bytes(static_cast<const std::byte*>(zmq_msg_data(&msg)), zmq_msg_size(&msg)));
    zmq_msg_close(&msg);
    return 1;
  }

 private:
  void open(bool bind) {
    ctx_ = zmq_ctx_new();
    if (ctx_ == nullptr) zmq_fail("context");
    sock_ = zmq_socket(ctx_, ZMQ_PAIR);
    if (sock_ == nullptr) zmq_fail("socket");
    const int linger_ms = 5000;  // the end-of-stream message must go out before close
    zmq_setsockopt(sock_, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    if ((bind ? zmq_bind(sock_, endpoint_.c_str()) : zmq_connect(sock_, endpoint_.c_str())) != 0)
      zmq_fail(bind ? "bind" : "connect");
  }

  std::string endpoint_;
  void* ctx_ = nullptr;
  void* sock_ = nullptr;
};

}  // namespace

std::unique_ptr<Channel> make_zeromq(std::uint32_t size, const std::string& dir) {
  return std::make_unique<ZeromqChannel>(size, dir);
}

}  // namespace shmbus::bench::peers
