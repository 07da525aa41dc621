// lib/control/protocol.cpp — encoder and validating decoder of protocol.hpp.
#include "control/protocol.hpp"

#include <cstring>

namespace shmbus::control {
namespace {

class Writer {
 public:
  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out_.insert(out_.end(), p, p + sizeof(T));
  }
  void str(std::string_view s) {
    put<std::uint16_t>(static_cast<std::uint16_t>(s.size()));
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out_.insert(out_.end(), p, p + s.size());
  }
  void ids(const std::vector<std::uint32_t>& v) {
    put<std::uint16_t>(static_cast<std::uint16_t>(v.size()));
    for (auto id : v) put(id);
  }
  std::vector<std::byte>& bytes() { return out_; }

 private:
  std::vector<std::byte> out_;
};

// Reads fields from a bounded body; the first failure sticks.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> b) : b_(b) {}
  template <class T>
  T get() {
    T v{};
    if (failed_ || b_.size() - at_ < sizeof(T)) {
      fail(ErrorCode::Truncated, "a field runs past the end of the body");
      return v;
    }
    std::memcpy(&v, b_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  std::string str(std::size_t max, const char* what) {
    const auto n = get<std::uint16_t>();
    if (failed_) return {};
    if (n > max) {
      fail(ErrorCode::Oversized, std::string(what) + " is " + std::to_string(n) +
                                     " bytes, over the bound of " + std::to_string(max));
      return {};
    }
    if (b_.size() - at_ < n) {
      fail(ErrorCode::Truncated, std::string(what) + " runs past the end of the body");
      return {};
    }
    std::string s(reinterpret_cast<const char*>(b_.data() + at_), n);
    at_ += n;
    return s;
  }
  std::vector<std::uint32_t> ids(const char* what) {
    const auto n = get<std::uint16_t>();
    if (failed_) return {};
    if (n > kMaxIds) {
      fail(ErrorCode::Oversized, std::string(what) + " has " + std::to_string(n) +
                                     " ids, over the bound of " + std::to_string(kMaxIds));
      return {};
    }
    std::vector<std::uint32_t> v;
    for (std::uint16_t i = 0; i < n && !failed_; ++i) v.push_back(get<std::uint32_t>());
    return v;
  }
  void fail(ErrorCode c, std::string text) {
    if (failed_) return;
    failed_ = true;
    code_ = c;
    text_ = std::move(text);
  }
  bool failed() const { return failed_; }
  bool done() const { return at_ == b_.size(); }
  ErrorCode code() const { return code_; }
  const std::string& text() const { return text_; }

 private:
  std::span<const std::byte> b_;
  std::size_t at_ = 0;
  bool failed_ = false;
  ErrorCode code_ = ErrorCode::Internal;
  std::string text_;
};

void put_options(Writer& w, const TopicOptions& o, int numa) {
  w.put(o.partitions);
  w.put(o.segment_bytes);
  w.put(o.segment_count);
  w.put(static_cast<std::uint8_t>(o.policy));
  w.put(static_cast<std::uint8_t>(o.exclusive_producer ? 1 : 0));
  w.put(o.frame_alignment);
  w.put(o.max_producers);
  w.put(o.max_consumers);
  w.put(static_cast<std::int32_t>(numa));
  w.put(o.hung_producer_timeout_ms);
  w.put(o.slow_consumer_timeout_ms);
  w.put(static_cast<std::uint8_t>(o.durable ? 1 : 0));
  w.put(static_cast<std::uint8_t>(o.fsync));
  w.put(o.fsync_interval_ms);
  w.put(o.retention_bytes);
  w.put(o.retention_ms);
}

void get_options(Reader& r, TopicOptions& o, int& numa) {
  o.partitions = r.get<std::uint32_t>();
  o.segment_bytes = r.get<std::uint64_t>();
  o.segment_count = r.get<std::uint32_t>();
  o.policy = static_cast<Policy>(r.get<std::uint8_t>());
  const auto excl = r.get<std::uint8_t>();
  o.exclusive_producer = excl != 0;
  o.frame_alignment = r.get<std::uint32_t>();
  o.max_producers = r.get<std::uint32_t>();
  o.max_consumers = r.get<std::uint32_t>();
  numa = r.get<std::int32_t>();
  o.hung_producer_timeout_ms = r.get<std::uint32_t>();
  o.slow_consumer_timeout_ms = r.get<std::uint32_t>();
  const auto durable = r.get<std::uint8_t>();
  o.durable = durable != 0;
  o.fsync = static_cast<Fsync>(r.get<std::uint8_t>());
  o.fsync_interval_ms = r.get<std::uint32_t>();
  o.retention_bytes = r.get<std::uint64_t>();
  o.retention_ms = r.get<std::uint64_t>();
  if (r.failed()) return;
  if (durable > 1) return r.fail(ErrorCode::Invalid, "durable must be 0 or 1");
  if (o.fsync != Fsync::Never && o.fsync != Fsync::Interval && o.fsync != Fsync::Always)
    return r.fail(ErrorCode::Invalid, "fsync must be 1 (never), 2 (interval) or 3 (always)");
  if (o.policy != Policy::Block && o.policy != Policy::Overwrite)
    r.fail(ErrorCode::Invalid, "policy must be 1 (block) or 2 (overwrite)");
  else if (excl > 1)
    r.fail(ErrorCode::Invalid, "exclusive must be 0 or 1");
  else if (numa < -1 || numa > 4095)
    r.fail(ErrorCode::Invalid, "numa_node must be -1 or 0..4095");
  if (numa >= 0) o.placement = {Placement::Kind::Node, numa};
}

void put_acl(Writer& w, const Acl& a) {
  w.put(a.owner_uid);
  w.put(a.group_gid);
  w.put(a.mode);
  w.ids(a.producer_users);
  w.ids(a.producer_groups);
  w.ids(a.consumer_users);
  w.ids(a.consumer_groups);
}

void get_acl(Reader& r, Acl& a) {
  a.owner_uid = r.get<std::uint32_t>();
  a.group_gid = r.get<std::uint32_t>();
  a.mode = r.get<std::uint32_t>();
  a.producer_users = r.ids("producer_users");
  a.producer_groups = r.ids("producer_groups");
  a.consumer_users = r.ids("consumer_users");
  a.consumer_groups = r.ids("consumer_groups");
  if (!r.failed() && (a.mode & ~0777u) != 0)
    r.fail(ErrorCode::Invalid, "mode has bits outside 0777");
}

bool is_request(std::uint16_t t) {
  return t >= 1 && t <= 10;
}
bool is_reply(std::uint16_t t) {
  return t >= 100 && t <= 105;
}

}  // namespace

const char* to_string(ErrorCode c) noexcept {
  switch (c) {
    case ErrorCode::Truncated:
      return "truncated";
    case ErrorCode::Oversized:
      return "oversized";
    case ErrorCode::BadMagic:
      return "bad magic";
    case ErrorCode::BadVersion:
      return "bad version";
    case ErrorCode::UnknownType:
      return "unknown type";
    case ErrorCode::BadLength:
      return "bad length";
    case ErrorCode::OutOfOrder:
      return "out of order";
    case ErrorCode::Invalid:
      return "invalid";
    case ErrorCode::NotFound:
      return "not found";
    case ErrorCode::Exists:
      return "exists";
    case ErrorCode::Denied:
      return "denied";
    case ErrorCode::Internal:
      return "internal";
    case ErrorCode::Quarantined:
      return "quarantined";
  }
  return "unknown error";
}

Message error_reply(std::uint32_t request_id, ErrorCode code, std::string text) {
  Message m;
  m.type = MsgType::Error;
  m.request_id = request_id;
  m.code = code;
  m.text = std::move(text);
  if (m.text.size() > kMaxText) m.text.resize(kMaxText);
  return m;
}

std::vector<std::byte> encode(const Message& m) {
  Writer body;
  switch (m.type) {
    case MsgType::Hello:
    case MsgType::DeleteTopic:
    case MsgType::DescribeTopic:
      body.str(m.name);
      break;
    case MsgType::CreateTopic:
      body.str(m.name);
      put_options(body, m.options, m.numa_node);
      put_acl(body, m.acl);
      break;
    case MsgType::AttachProducer:
    case MsgType::AttachConsumer:
    case MsgType::Detach:
      body.str(m.name);
      body.put(m.partition);
      break;
    case MsgType::Reattach:
      body.str(m.name);
      body.put(m.partition);
      body.put(static_cast<std::uint8_t>(m.role));
      break;
    case MsgType::ListTopics:
      body.str(m.name);
      break;
    case MsgType::Stats:
      break;
    case MsgType::Ok:
      if (m.pid != 0) {  // the reply to Hello
        body.put(m.pid);
        body.str(m.name);
      }
      break;
    case MsgType::Error:
      body.put(static_cast<std::uint32_t>(m.code));
      body.str(m.text);
      break;
    case MsgType::Described:
      put_options(body, m.options, m.numa_node);
      put_acl(body, m.acl);
      body.put(static_cast<std::uint32_t>(m.partitions.size()));
      for (const auto& p : m.partitions) {
        body.put(p.tail);
        body.put(p.producers);
        body.put(p.consumers);
      }
      break;
    case MsgType::Listed:
      body.put(static_cast<std::uint32_t>(m.names.size()));
      for (const auto& n : m.names) body.str(n);
      body.put(static_cast<std::uint8_t>(m.more ? 1 : 0));
      break;
    case MsgType::Attached:
      body.put(m.partition);
      body.put(static_cast<std::uint8_t>(m.role));
      body.put(m.ring_bytes);
      break;
    case MsgType::StatsReply:
      body.put(m.stats.clients);
      body.put(m.stats.topics);
      body.put(m.stats.requests);
      body.put(m.stats.errors);
      body.put(m.stats.reaped_producers);
      body.put(m.stats.reaped_consumers);
      body.put(m.stats.revoked_claims);
      body.put(m.stats.evicted_consumers);
      body.put(m.stats.spilled_bytes);
      body.put(m.stats.spill_errors);
      break;
  }
  Writer out;
  out.put(kMagic);
  out.put(kVersion);
  out.put(static_cast<std::uint16_t>(m.type));
  out.put(static_cast<std::uint32_t>(body.bytes().size()));
  out.put(m.request_id);
  auto& o = out.bytes();
  o.insert(o.end(), body.bytes().begin(), body.bytes().end());
  return std::move(o);
}

Decoded decode(std::span<const std::byte> bytes, bool truncated, bool hello_done, bool replies) {
  Decoded d;
  auto fail = [&](ErrorCode c, std::uint32_t id, std::string text) {
    d.ok = false;
    d.error = DecodeError{c, id, std::move(text)};
    return d;
  };
  const std::size_t max = replies ? kMaxReply : kMaxMessage;
  if (truncated || bytes.size() > max)
    return fail(ErrorCode::Oversized, 0, "message is over " + std::to_string(max) + " bytes");
  if (bytes.size() < kHeaderBytes)
    return fail(ErrorCode::Truncated, 0,
                "message of " + std::to_string(bytes.size()) + " bytes is shorter than a header");
  Reader h(bytes.first(kHeaderBytes));
  const auto magic = h.get<std::uint32_t>();
  const auto version = h.get<std::uint16_t>();
  const auto type = h.get<std::uint16_t>();
  const auto length = h.get<std::uint32_t>();
  const auto id = h.get<std::uint32_t>();
  if (magic != kMagic) return fail(ErrorCode::BadMagic, 0, "bad magic");
  if (version != kVersion)
    return fail(ErrorCode::BadVersion, id,
                "protocol version " + std::to_string(version) + ", this side speaks " +
                    std::to_string(kVersion));
  if (replies ? !is_reply(type) : !is_request(type))
    return fail(ErrorCode::UnknownType, id, "unknown message type " + std::to_string(type));
  if (length != bytes.size() - kHeaderBytes)
    return fail(ErrorCode::BadLength, id,
                "header says " + std::to_string(length) + " body bytes, message has " +
                    std::to_string(bytes.size() - kHeaderBytes));
  Message& m = d.message;
  m.type = static_cast<MsgType>(type);
  m.request_id = id;
  if (!replies) {
    if (!hello_done && m.type != MsgType::Hello)
      return fail(ErrorCode::OutOfOrder, id, "the first request must be hello");
    if (hello_done && m.type == MsgType::Hello)
      return fail(ErrorCode::OutOfOrder, id, "hello was already said on this connection");
  }
  Reader r(bytes.subspan(kHeaderBytes));
  switch (m.type) {
    case MsgType::Hello:
    case MsgType::DeleteTopic:
    case MsgType::DescribeTopic:
      m.name = r.str(kMaxName, "name");
      break;
    case MsgType::CreateTopic:
      m.name = r.str(kMaxName, "topic name");
      get_options(r, m.options, m.numa_node);
      get_acl(r, m.acl);
      break;
    case MsgType::AttachProducer:
    case MsgType::AttachConsumer:
    case MsgType::Detach:
      m.name = r.str(kMaxName, "topic name");
      m.partition = r.get<std::uint32_t>();
      break;
    case MsgType::Reattach:
      m.name = r.str(kMaxName, "topic name");
      m.partition = r.get<std::uint32_t>();
      m.role = static_cast<Role>(r.get<std::uint8_t>());
      if (!r.failed() && m.role != Role::Producer && m.role != Role::Consumer)
        r.fail(ErrorCode::Invalid, "role must be 1 (producer) or 2 (consumer)");
      break;
    case MsgType::ListTopics:
      m.name = r.str(kMaxName, "topic name to list after");
      break;
    case MsgType::Stats:
      break;
    case MsgType::Ok:
      if (length != 0) {  // the reply to Hello; encode() writes it for a pid that is not 0
        m.pid = r.get<std::uint32_t>();
        m.name = r.str(kMaxName, "bus name");
        if (!r.failed() && m.pid == 0) r.fail(ErrorCode::Invalid, "daemon pid 0");
      }
      break;
    case MsgType::Error:
      m.code = static_cast<ErrorCode>(r.get<std::uint32_t>());
      m.text = r.str(kMaxText, "error text");
      break;
    case MsgType::Described: {
      get_options(r, m.options, m.numa_node);
      get_acl(r, m.acl);
      const auto n = r.get<std::uint32_t>();
      if (!r.failed() && n > 1024) r.fail(ErrorCode::Oversized, "over 1024 partitions");
      for (std::uint32_t i = 0; i < n && !r.failed(); ++i) {
        PartitionStat p;
        p.tail = r.get<std::uint64_t>();
        p.producers = r.get<std::uint32_t>();
        p.consumers = r.get<std::uint32_t>();
        m.partitions.push_back(p);
      }
      break;
    }
    case MsgType::Listed: {
      const auto n = r.get<std::uint32_t>();
      for (std::uint32_t i = 0; i < n && !r.failed(); ++i)
        m.names.push_back(r.str(kMaxName, "topic name"));
      m.more = r.get<std::uint8_t>() != 0;
      break;
    }
    case MsgType::Attached:
      m.partition = r.get<std::uint32_t>();
      m.role = static_cast<Role>(r.get<std::uint8_t>());
      m.ring_bytes = r.get<std::uint64_t>();
      if (!r.failed() && m.role != Role::Producer && m.role != Role::Consumer)
        r.fail(ErrorCode::Invalid, "role must be 1 or 2");
      break;
    case MsgType::StatsReply:
      m.stats.clients = r.get<std::uint32_t>();
      m.stats.topics = r.get<std::uint32_t>();
      m.stats.requests = r.get<std::uint64_t>();
      m.stats.errors = r.get<std::uint64_t>();
      m.stats.reaped_producers = r.get<std::uint64_t>();
      m.stats.reaped_consumers = r.get<std::uint64_t>();
      m.stats.revoked_claims = r.get<std::uint64_t>();
      m.stats.evicted_consumers = r.get<std::uint64_t>();
      m.stats.spilled_bytes = r.get<std::uint64_t>();
      m.stats.spill_errors = r.get<std::uint64_t>();
      break;
  }
  if (r.failed()) return fail(r.code(), id, r.text());
  if (!r.done()) return fail(ErrorCode::BadLength, id, "bytes left over after the last field");
  d.ok = true;
  return d;
}

}  // namespace shmbus::control
