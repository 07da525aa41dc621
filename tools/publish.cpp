// shmbus publish TOPIC [MESSAGE...]: arguments, or one message per line of stdin.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "commands.hpp"
#include "consumers.hpp"
#include "header.hpp"
#include "shmbus/producer.hpp"

namespace shmbus::cli {
namespace {

// Why the partition is full, for the error message: the slowest consumer.
std::string slowest_consumer(const Context& ctx, const std::string& topic, std::uint32_t part) {
  auto info = Topic::describe(ctx.bus, topic);
  if (!info || part >= info->partitions.size()) return "";
  const PartitionInfo& p = info->partitions[part];
  if (p.consumer_positions.empty()) return "";
  std::size_t k = 0;
  for (std::size_t i = 1; i < p.consumer_positions.size(); ++i)
    if (p.consumer_positions[i] < p.consumer_positions[k]) k = i;
  return " (the slowest consumer, " + consumer_text(p, k, info->options.policy) + ")";
}

class Publisher {
 public:
  Publisher(const Context& ctx, const PublishOptions& o, Producer producer)
      : ctx_(ctx), o_(o), producer_(std::move(producer)) {
    timeout_ = *parse_duration(o.timeout, nullptr);  // checked by the command line
    for (const std::string& h : o.headers) {
      std::string why;
      parsed_.push_back(*parse_header(h, &why));  // checked by the command line
    }
    for (const Header& h : parsed_) headers_.push_back(h.property());
  }

  void publish(std::string_view payload) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(payload.data()),
                                           payload.size());
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    auto pause = std::chrono::microseconds(20);
    for (;;) {
      const Status s = producer_.offer(bytes, o_.key, headers_);
      if (s == Status::Ok) break;
      if (s == Status::TooLarge)
        fail(kFailed, "message " + std::to_string(sent_ + 1) + " (" +
                          std::to_string(payload.size()) + " bytes, plus key and headers) does " +
                          "not fit in one segment of topic '" + o_.topic + "' (at most " +
                          std::to_string(producer_.max_payload()) + " bytes of payload, key " +
                          "and headers); " + done() +
                          ". Recreate the topic with a larger --segment-bytes");
      if (s != Status::Full)
        fail(kFailed, std::string("publishing failed: ") + to_string(s) + "; " + done());
      if (stop_requested()) fail(kFailed, "interrupted while the partition was full; " + done());
      if (std::chrono::steady_clock::now() >= deadline)
        fail(kFailed, "topic '" + o_.topic + "' partition " + std::to_string(o_.partition) +
                          " stayed full for " + o_.timeout +
                          slowest_consumer(ctx_, o_.topic, o_.partition) + "; " + done() +
                          ". Let the consumers catch up, stop a stuck one, or raise --timeout");
      sleep_for(pause);
      pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
    }
    ++sent_;
  }

  std::uint64_t sent() const noexcept { return sent_; }

 private:
  std::string done() const {
    return std::to_string(sent_) + " message(s) were published before it";
  }

  const Context& ctx_;
  const PublishOptions& o_;
  Producer producer_;
  std::chrono::nanoseconds timeout_{};
  std::vector<Header> parsed_;
  std::vector<Property> headers_;  // views of parsed_
  std::uint64_t sent_ = 0;
};

}  // namespace

void run_publish(const Context& ctx, const PublishOptions& o) {
  const TopicInfo info = describe_or_fail(ctx, o.topic);
  check_partition(info, o.partition);
  ProducerOptions po;
  po.partition = o.partition;
  po.timestamps = !o.no_timestamp;
  po.prefault = false;  // a short-lived process: touch only the pages it writes
  auto producer = Producer::open(ctx.bus, o.topic, po);
  if (!producer) fail(producer.error());
  Publisher pub(ctx, o, std::move(producer).value());

  if (!o.messages.empty()) {
    for (const std::string& m : o.messages) pub.publish(m);
    return;
  }
  // One message per line of stdin, published as it arrives (so that
  // `producer-program | shmbus publish t` streams). getline(3) keeps NUL bytes.
  char* line = nullptr;
  std::size_t cap = 0;
  struct Free {
    char*& p;
    ~Free() { std::free(p); }
  } free_line{line};
  for (;;) {
    errno = 0;
    const ssize_t n = ::getline(&line, &cap, stdin);
    if (n < 0) {
      if (errno == EINTR && stop_requested())
        fail(kFailed, "interrupted; " + std::to_string(pub.sent()) + " message(s) published");
      if (errno != 0 && errno != EINTR)
        fail(kFailed, std::string("cannot read stdin: ") + std::strerror(errno));
      if (errno == EINTR) {
        clearerr(stdin);
        continue;
      }
      break;
    }
    std::string_view m(line, static_cast<std::size_t>(n));
    if (m.ends_with('\n')) m.remove_suffix(1);
    pub.publish(m);
  }
}

}  // namespace shmbus::cli
