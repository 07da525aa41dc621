// Redis Streams through hiredis on a unix socket: a stream per direction;
// send is XADD (trimmed to about kMaxLen entries), receive is XREAD BLOCK 0
// after the last ID read. Each process connects after fork.
#include <hiredis/hiredis.h>

#include <string>

#include "failure.hpp"
#include "peers.hpp"

namespace shmbus::bench::peers {
namespace {

constexpr int kMaxLen = 100000;  // a one-way reader that falls this far behind loses entries

class RedisChannel : public Channel {
 public:
  RedisChannel(std::uint32_t size, std::string socket)
      : Channel("redis streams", size), socket_(std::move(socket)), key_(unique_name("peers:")) {}
  ~RedisChannel() override { close(); }
  void open_ping() override { open(); }
  void open_echo() override { open(); }
  void close() override {
    if (c_ != nullptr) redisFree(c_);
    c_ = nullptr;
  }
  bool blocking() const override { return true; }
  void send(Direction d, Bytes m) override {
    redisReply* r =
        command("XADD %s MAXLEN ~ %d * d %b", stream(d).c_str(), kMaxLen, m.data(), m.size());
    freeReplyObject(r);
  }
  std::uint32_t receive(Direction d, Receiver r, std::uint32_t max) override {
    std::string& last = d == Direction::Ping ? last_ping_ : last_pong_;
    redisReply* rep =
        command("XREAD COUNT %u BLOCK 0 STREAMS %s %s", max, stream(d).c_str(), last.c_str());
    // [[key, [[id, [field, value]], ...]]]
    std::uint32_t n = 0;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 && rep->element[0]->elements == 2) {
      const redisReply* entries = rep->element[0]->element[1];
      for (std::size_t i = 0; i < entries->elements; ++i) {
        const redisReply* e = entries->element[i];
        if (e->elements != 2 || e->element[1]->elements != 2) bad_reply();
        const redisReply* value = e->element[1]->element[1];
        last.assign(e->element[0]->str, e->element[0]->len);
        r(Bytes(reinterpret_cast<const std::byte*>(value->str), value->len));
        ++n;
      }
    } else if (rep->type != REDIS_REPLY_NIL) {
      freeReplyObject(rep);
      bad_reply();
    }
    freeReplyObject(rep);
    return n;
  }

 private:
  [[noreturn]] static void bad_reply() { fail("redis: unexpected XREAD reply"); }
  void open() {
    c_ = redisConnectUnix(socket_.c_str());
    if (c_ == nullptr || c_->err != 0)
      fail("redis: cannot connect to " + socket_ + ": " + (c_ != nullptr ? c_->errstr : "?"));
  }
  std::string stream(Direction d) const {
    return key_ + (d == Direction::Ping ? ":ping" : ":pong");
  }
  template <class... A>
  redisReply* command(const char* fmt, A... args) {
    auto* r = static_cast<redisReply*>(redisCommand(c_, fmt, args...));
    if (r == nullptr) fail(std::string("redis: ") + c_->errstr);
    if (r->type == REDIS_REPLY_ERROR) {
      const std::string e(r->str, r->len);
      freeReplyObject(r);
      fail("redis: " + e);
    }
    return r;
  }

  std::string socket_;
  std::string key_;
  std::string last_ping_ = "0-0", last_pong_ = "0-0";
  redisContext* c_ = nullptr;
};

}  // namespace

std::unique_ptr<Channel> make_redis(std::uint32_t size, const std::string& socket) {
  return std::make_unique<RedisChannel>(size, socket);
}

}  // namespace shmbus::bench::peers
