// Eclipse iceoryx 2: an untyped publisher and subscriber per direction
// (zero-copy: loan, write, publish; take, read, release). The subscriber's
// queue blocks the publisher when full (no loss). Receivers poll take() in a
// busy loop, as shmbus consumers do. Each process registers with RouDi after
// fork (one runtime per process) and waits until its ports are connected.
// GCC 12 reports false -Warray-bounds / -Wstringop-overread inside iceoryx's
// cxx::string at -O3 (its truncating branch, never taken for our short
// names); the warnings are raised where the header is inlined.
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overread"

#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "failure.hpp"
#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_posh/mepoo/chunk_header.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"
#include "peers.hpp"

namespace shmbus::bench::peers {
namespace {

iox::capro::IdString_t id(const std::string& s) {
  return iox::capro::IdString_t(iox::cxx::TruncateToCapacity, s.c_str());
}

// Ports open in this process. The runtime says goodbye to RouDi in its
// destructor, which the harness's processes never run (they leave with
// _exit); RouDi would otherwise keep them registered and, when it stops,
// send SIGTERM to their pids (perhaps reused by then) and fail. So the last
// close() destroys the runtime by hand; the process exits right after.
int g_open = 0;

void init_runtime() {
  static bool done = false;
  ++g_open;
  if (done) return;
  // Registration logs at debug level by default: keep the table readable.
  iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn,
                                                           iox::log::LogLevelOutput::kHideLogLevel);
  const std::string name = unique_name("shmbus-peers-");
  iox::runtime::PoshRuntime::initRuntime(
      iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name.c_str()));
  done = true;
}

class IceoryxChannel : public Channel {
 public:
  explicit IceoryxChannel(std::uint32_t size)
      : Channel("iceoryx", size), instance_(unique_name("")) {}
  void open_ping() override { open(Direction::Ping, Direction::Pong); }
  void open_echo() override { open(Direction::Pong, Direction::Ping); }
  void close() override {
    if (!pub_) return;
    pub_.reset();
    sub_.reset();
    if (--g_open == 0) {
      iox::runtime::PoshRuntime& rt = iox::runtime::PoshRuntime::getInstance();
      rt.~PoshRuntime();
    }
  }
  void send(Direction, Bytes m) override {
    for (;;) {
      auto loaned = pub_->loan(static_cast<std::uint32_t>(m.size()));
      if (!loaned.has_error()) {
        std::memcpy(loaned.value(), m.data(), m.size());
        pub_->publish(loaned.value());
        return;
      }
      // Every chunk of the pool is in flight: wait for the subscriber to release some.
      std::this_thread::yield();
    }
  }
  std::uint32_t receive(Direction, Receiver r, std::uint32_t max) override {
    std::uint32_t n = 0;
    while (n < max) {
      auto taken = sub_->take();
      if (taken.has_error()) break;
      const void* p = taken.value();
      const auto* h = iox::mepoo::ChunkHeader::fromUserPayload(p);
      r(Bytes(static_cast<const std::byte*>(p), h->userPayloadSize()));
      sub_->release(p);
      ++n;
    }
    return n;
  }

 private:
  iox::capro::ServiceDescription service(Direction d) const {
    return {id("shmbus-peers"), id(instance_), id(d == Direction::Ping ? "ping" : "pong")};
  }
  void open(Direction out, Direction in) {
    init_runtime();
    iox::popo::PublisherOptions po;
    po.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
    pub_.emplace(service(out), po);
    iox::popo::SubscriberOptions so;
    so.queueCapacity = 256;
    so.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
    sub_.emplace(service(in), so);
    // RouDi connects the ports asynchronously; a message published before
    // that would be lost.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (sub_->getSubscriptionState() != iox::SubscribeState::SUBSCRIBED ||
           !pub_->hasSubscribers()) {
      if (std::chrono::steady_clock::now() > deadline)
        fail("iceoryx: ports not connected after 30 s (is RouDi running?)");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  std::string instance_;
  std::optional<iox::popo::UntypedPublisher> pub_;
  std::optional<iox::popo::UntypedSubscriber> sub_;
};

}  // namespace

std::unique_ptr<Channel> make_iceoryx(std::uint32_t size) {
  return std::make_unique<IceoryxChannel>(size);
}

}  // namespace shmbus::bench::peers
