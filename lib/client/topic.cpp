#include "shmbus/topic.hpp"

#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "client/attach.hpp"
#include "log/named_cursor.hpp"
#include "log/ring.hpp"
#include "log/topic_files.hpp"
#include "shm/file.hpp"
#include "shm/name.hpp"
#include "shm/placement.hpp"

namespace shmbus {

namespace {

// One request to the bus's daemon; an Error reply becomes an Error naming
// what was asked and what the daemon said.
Outcome ask_daemon(const std::string& socket, control::Message request, const std::string& what) {
  auto conn = control::Connection::connect(socket, "topic");
  if (!conn) return conn.error();
  auto reply = conn->call(std::move(request));
  if (!reply) return reply.error();
  if (reply->message.type == control::MsgType::Error) {
    const int code = reply->message.code == control::ErrorCode::Exists     ? EEXIST
                     : reply->message.code == control::ErrorCode::NotFound ? ENOENT
                     : reply->message.code == control::ErrorCode::Denied   ? EACCES
                     : reply->message.code == control::ErrorCode::Invalid  ? EINVAL
                                                                           : EPROTO;
    return Error{code, "shmbusd (" + socket + ") refused to " + what + ": " + reply->message.text};
  }
  if (reply->message.type != control::MsgType::Ok)
    return Error{EPROTO, "shmbusd (" + socket + ") sent an unexpected reply to " + what};
  return Done{};
}

// The NUMA node to ask the daemon for: CallerNode is this thread's node,
// decided here, where the caller runs.
Result<int> caller_side_node(const Placement& p) {
  if (p.kind != Placement::Kind::CallerNode) return p.kind == Placement::Kind::Node ? p.node : -1;
  auto topology = shm::Topology::host();
  if (!topology) return topology.error();
  return topology->choose_node(p, ::sched_getcpu());
}

}  // namespace

// With a daemon, it creates the files (owned by the caller, with the
// options' mode) and keeps the topic in its catalogue; without one, the
// caller creates them itself.
Outcome Topic::create(std::string_view bus, std::string_view topic, const TopicOptions& options) {
  if (auto ok = shm::check_name("bus", bus); !ok) return ok.error();
  if (auto ok = shm::check_name("topic", topic); !ok) return ok.error();
  if (auto socket = client::daemon_socket(bus)) {
    // The daemon maps and prefaults every topic it creates; these two are
    // properties of a creating process's own mapping, which it does not take.
    if (options.huge_pages || options.lock_memory)
      return Error{EINVAL, "create topic " + std::string(topic) + " through shmbusd (" + *socket +
                               "): huge_pages and lock_memory are not passed to the daemon; "
                               "create the topic without them"};
    auto node = caller_side_node(options.placement);
    if (!node) return node.error();
    control::Message request;
    request.type = control::MsgType::CreateTopic;
    request.name = std::string(topic);
    request.options = options;
    request.numa_node = *node;
    request.acl.owner_uid = ::geteuid();
    request.acl.group_gid = ::getegid();
    request.acl.mode = options.mode;
    return ask_daemon(*socket, std::move(request), "create topic " + std::string(topic));
  }
  // Nothing would ever write it to disk, and its spiller's parked cursor
  // would hold a `block` topic's producers back from the first ring on.
  if (options.durable)
    return Error{ENOTSUP, "create topic " + std::string(topic) +
                              ": a durable topic is recorded by shmbusd's spiller, and no "
                              "shmbusd serves bus '" +
                              std::string(bus) +
                              "' (no control socket; see SHMBUS_SOCKET): start shmbusd, or "
                              "create the topic without durable"};
  return log::create_topic_files(shm::bus_directory(bus), topic, options);
}

Result<TopicInfo> Topic::describe(std::string_view bus, std::string_view topic) {
  if (auto ok = shm::check_name("bus", bus); !ok) return ok.error();
  const std::string dir = shm::bus_directory(bus);
  TopicInfo info;
  info.name = std::string(topic);
  for (std::uint32_t p = 0, n = 1; p < n; ++p) {
    auto ring = log::Ring::open_observer(dir, topic, p);
    if (!ring) return ring.error();
    const log::Ring& r = *ring;
    if (p == 0) {
      n = r.partitions();
      info.options.partitions = n;
      info.options.segment_bytes = r.segment_bytes();
      info.options.segment_count = static_cast<std::uint32_t>(r.capacity() / r.segment_bytes());
      info.options.policy = r.policy();
      info.options.frame_alignment = r.alignment();
      info.options.max_producers = r.max_producers();
      info.options.max_consumers = r.max_consumers();
      info.options.exclusive_producer = r.exclusive();
      info.options.hung_producer_timeout_ms = r.supervision().hung_producer_timeout_ms;
      info.options.slow_consumer_timeout_ms = r.supervision().slow_consumer_timeout_ms;
      const log::DurabilityConfig d = r.durability();
      info.options.durable = d.durable != 0;
      if (info.options.durable) {
        info.options.fsync = static_cast<Fsync>(d.fsync);
        info.options.fsync_interval_ms = d.fsync_interval_ms;
        info.options.retention_bytes = r.retention().bytes;
        info.options.retention_ms = r.retention().ms;
      }
    }
    PartitionInfo part;
    part.tail = r.tail().load(std::memory_order_acquire);
    part.oldest = r.oldest_intact(part.tail);
    {
      log::SpillState& w = r.spill();
      auto load = [](std::uint64_t& v) { return log::atomic(v).load(std::memory_order_acquire); };
      part.spill = {load(w.committed), load(w.written), load(w.durable), load(w.disk_start),
                    static_cast<int>(log::atomic(w.failed_errno).load(std::memory_order_acquire))};
    }
    for (std::uint32_t i = 0; i < r.max_producers(); ++i) {
      log::ProducerSlot& s = r.producer_slot(i);
      const std::uint64_t c = log::atomic(s.control).load(std::memory_order_acquire);
      if (log::state_of(c) != log::SlotState::Active) continue;
      ++part.producers;
      part.producer_pids.push_back(log::pid_of(c));
    }
    for (std::uint32_t i = 0; i < r.max_consumers(); ++i) {
      log::CursorSlot& s = r.cursor_slot(i);
      const std::uint64_t c = log::atomic(s.control).load(std::memory_order_acquire);
      if (log::state_of(c) != log::SlotState::Active) continue;
      ++part.consumers;
      part.consumer_positions.push_back(log::atomic(s.position).load(std::memory_order_acquire));
      std::string name = log::slot_name(s);
      // A named cursor whose holder closed or died is parked: nobody holds it.
      part.consumer_pids.push_back(name.empty() || log::holder_alive(c, s.stamp) ? log::pid_of(c)
                                                                                 : log::kNoHolder);
      part.consumer_names.push_back(std::move(name));
    }
    info.partitions.push_back(std::move(part));
  }
  return info;
}

Outcome Topic::remove(std::string_view bus, std::string_view topic) {
  if (auto ok = shm::check_name("bus", bus); !ok) return ok.error();
  if (auto ok = shm::check_name("topic", topic); !ok) return ok.error();
  if (auto socket = client::daemon_socket(bus)) {
    control::Message request;
    request.type = control::MsgType::DeleteTopic;
    request.name = std::string(topic);
    return ask_daemon(*socket, std::move(request), "delete topic " + std::string(topic));
  }
  return log::remove_topic_files(shm::bus_directory(bus), topic);
}

Outcome Topic::delete_cursor(std::string_view bus, std::string_view topic, std::uint32_t partition,
                             std::string_view name) {
  if (auto ok = log::check_cursor_name(name); !ok) return ok.error();
  // As a consumer: the daemon checks the ACL and hands over the cursor file.
  auto attached = client::attach(bus, topic, partition, false, false);
  if (!attached) return attached.error();
  return log::delete_named(attached->ring, name);
}

}  // namespace shmbus
