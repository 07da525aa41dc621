// Boost.Interprocess message_queue: one queue per direction, created in the
// parent (256 messages of `size` bytes), opened by name in A and B, removed
// by the parent.
#include <boost/interprocess/ipc/message_queue.hpp>
#include <optional>
#include <vector>

#include "failure.hpp"
#include "peers.hpp"

namespace shmbus::bench::peers {
namespace {

namespace bip = boost::interprocess;

class BoostMqChannel : public Channel {
 public:
  explicit BoostMqChannel(std::uint32_t size)
      : Channel("boost message_queue", size),
        ping_name_(unique_name("shmbus-peers-mq-")),
        pong_name_(ping_name_ + "-pong"),
        buf_(size) {
    try {
      bip::message_queue(bip::create_only, ping_name_.c_str(), 256, size);
      bip::message_queue(bip::create_only, pong_name_.c_str(), 256, size);
    } catch (const bip::interprocess_exception& e) {
      remove();
      fail(std::string("boost message_queue: ") + e.what());
    }
  }
  ~BoostMqChannel() override { remove(); }
  void open_ping() override { open(); }
  void open_echo() override { open(); }
  void close() override {
    ping_.reset();
    pong_.reset();
  }
  bool blocking() const override { return true; }
  void send(Direction d, Bytes m) override { queue(d).send(m.data(), m.size(), 0); }
  std::uint32_t receive(Direction d, Receiver r, std::uint32_t) override {
    bip::message_queue::size_type got = 0;
    unsigned prio = 0;
    queue(d).receive(buf_.data(), buf_.size(), got, prio);
    r(Bytes(buf_.data(), got));
    return 1;
  }

 private:
  void open() {
    ping_.emplace(bip::open_only, ping_name_.c_str());
    pong_.emplace(bip::open_only, pong_name_.c_str());
  }
  bip::message_queue& queue(Direction d) { return d == Direction::Ping ? *ping_ : *pong_; }
  void remove() {
    bip::message_queue::remove(ping_name_.c_str());
    bip::message_queue::remove(pong_name_.c_str());
  }

  std::string ping_name_, pong_name_;
  std::vector<std::byte> buf_;
  std::optional<bip::message_queue> ping_, pong_;
};

}  // namespace

std::unique_ptr<Channel> make_boost_mq(std::uint32_t size) {
  return std::make_unique<BoostMqChannel>(size);
}

}  // namespace shmbus::bench::peers
