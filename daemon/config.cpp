// daemon/config.cpp — see config.hpp.
#include "config.hpp"

#include <grp.h>
#include <pwd.h>

#include <toml++/toml.h>
#include <bit>
#include <cerrno>
#include <charconv>
#include <set>
#include <stdexcept>

#include "log/ring.hpp"
#include "shm/name.hpp"

namespace shmbus::daemon {
namespace {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const toml::source_region& where, const std::string& key,
                         const std::string& what) const {
    throw ConfigError(file_ + ":" + std::to_string(where.begin.line) + ":" +
                      std::to_string(where.begin.column) + ": " + key + ": " + what);
  }

  // Fails on keys of `t` that are not in `known`.
  void only(const toml::table& t, const std::string& prefix,
            std::initializer_list<std::string_view> known) const {
    for (auto&& [k, v] : t) {
      bool ok = false;
      for (auto n : known) ok = ok || k.str() == n;
      if (!ok) fail(k.source(), prefix + std::string(k.str()), "unknown key");
    }
  }

  std::string string(const toml::node& n, const std::string& key) const {
    if (!n.is_string()) fail(n.source(), key, "must be a string");
    return *n.value<std::string>();
  }
  std::int64_t integer(const toml::node& n, const std::string& key, std::int64_t lo,
                       std::int64_t hi) const {
    if (!n.is_integer()) fail(n.source(), key, "must be an integer");
    const auto v = *n.value<std::int64_t>();
    if (v < lo || v > hi)
      fail(
          n.source(), key,
          std::to_string(v) + " is out of range " + std::to_string(lo) + ".." + std::to_string(hi));
    return v;
  }
  std::uint64_t power_of_two(const toml::node& n, const std::string& key, std::int64_t lo,
                             std::int64_t hi) const {
    const auto v = static_cast<std::uint64_t>(integer(n, key, lo, hi));
    if (!std::has_single_bit(v))
      fail(n.source(), key, std::to_string(v) + " is not a power of two");
    return v;
  }
  bool boolean(const toml::node& n, const std::string& key) const {
    if (!n.is_boolean()) fail(n.source(), key, "must be true or false");
    return *n.value<bool>();
  }
  std::uint32_t user(const toml::node& n, const std::string& key) const {
    if (n.is_integer()) return static_cast<std::uint32_t>(integer(n, key, 0, 0xfffffffe));
    const auto name = string(n, key);
    const passwd* pw = ::getpwnam(name.c_str());
    if (pw == nullptr) fail(n.source(), key, "no user named '" + name + "'");
    return pw->pw_uid;
  }
  std::uint32_t group(const toml::node& n, const std::string& key) const {
    if (n.is_integer()) return static_cast<std::uint32_t>(integer(n, key, 0, 0xfffffffe));
    const auto name = string(n, key);
    const ::group* gr = ::getgrnam(name.c_str());
    if (gr == nullptr) fail(n.source(), key, "no group named '" + name + "'");
    return gr->gr_gid;
  }
  std::vector<std::uint32_t> ids(const toml::node& n, const std::string& key, bool users) const {
    const auto* a = n.as_array();
    if (a == nullptr) fail(n.source(), key, "must be an array of names or ids");
    if (a->size() > control::kMaxIds)
      fail(n.source(), key, "more than " + std::to_string(control::kMaxIds) + " entries");
    std::vector<std::uint32_t> out;
    for (std::size_t i = 0; i < a->size(); ++i) {
      const std::string k = key + "[" + std::to_string(i) + "]";
      out.push_back(users ? user(*a->get(i), k) : group(*a->get(i), k));
    }
    return out;
  }
  std::uint32_t mode(const toml::node& n, const std::string& key) const {
    std::uint32_t m = 0;
    if (n.is_integer()) {
      m = static_cast<std::uint32_t>(integer(n, key, 0, 0777));
    } else {
      const auto s = string(n, key);
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), m, 8);
      if (ec != std::errc{} || end != s.data() + s.size() || s.empty() || m > 0777)
        fail(n.source(), key, "'" + s + "' is not an octal mode like \"0640\"");
    }
    if ((m & 0002) != 0) fail(n.source(), key, "world-writable modes (o+w) are refused");
    return m;
  }

  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

void read_acl(const Reader& r, const toml::table& t, const std::string& prefix, control::Acl& acl) {
  r.only(t, prefix,
         {"owner", "group", "mode", "producer_users", "producer_groups", "consumer_users",
          "consumer_groups"});
  if (auto n = t.get("owner")) acl.owner_uid = r.user(*n, prefix + "owner");
  if (auto n = t.get("group")) acl.group_gid = r.group(*n, prefix + "group");
  if (auto n = t.get("mode")) acl.mode = r.mode(*n, prefix + "mode");
  if (auto n = t.get("producer_users"))
    acl.producer_users = r.ids(*n, prefix + "producer_users", true);
  if (auto n = t.get("producer_groups"))
    acl.producer_groups = r.ids(*n, prefix + "producer_groups", false);
  if (auto n = t.get("consumer_users"))
    acl.consumer_users = r.ids(*n, prefix + "consumer_users", true);
  if (auto n = t.get("consumer_groups"))
    acl.consumer_groups = r.ids(*n, prefix + "consumer_groups", false);
}

TopicConfig read_topic(const Reader& r, const toml::table& t, const std::string& prefix,
                       std::uint64_t max_topic_bytes) {
  r.only(t, prefix,
         {"name", "partitions", "segment_bytes", "segments", "policy", "alignment", "numa_node",
          "max_producers", "max_consumers", "exclusive_producer", "hung_producer_timeout_ms",
          "slow_consumer_timeout_ms", "durable", "fsync", "fsync_interval_ms", "retention_bytes",
          "retention_ms", "acl"});
  TopicConfig c;
  const auto* name = t.get("name");
  if (name == nullptr) r.fail(t.source(), prefix + "name", "missing (every topic needs a name)");
  c.name = r.string(*name, prefix + "name");
  if (auto ok = shm::check_name("topic", c.name); !ok)
    r.fail(name->source(), prefix + "name", ok.error().message);
  auto& o = c.options;
  if (auto n = t.get("partitions"))
    o.partitions = static_cast<std::uint32_t>(r.integer(*n, prefix + "partitions", 1, 1024));
  if (auto n = t.get("segment_bytes"))
    o.segment_bytes = r.power_of_two(*n, prefix + "segment_bytes", 4096, 1 << 30);
  if (auto n = t.get("segments"))
    o.segment_count = static_cast<std::uint32_t>(r.power_of_two(*n, prefix + "segments", 2, 1024));
  if (auto n = t.get("alignment"))
    o.frame_alignment =
        static_cast<std::uint32_t>(r.power_of_two(*n, prefix + "alignment", 32, 4096));
  if (auto n = t.get("max_producers"))
    o.max_producers = static_cast<std::uint32_t>(r.integer(*n, prefix + "max_producers", 1, 1024));
  if (auto n = t.get("max_consumers"))
    o.max_consumers = static_cast<std::uint32_t>(r.integer(*n, prefix + "max_consumers", 1, 1024));
  if (auto n = t.get("exclusive_producer"))
    o.exclusive_producer = r.boolean(*n, prefix + "exclusive_producer");
  // Supervision timeouts: 0 (never) or kMinTimeoutMs..kMaxTimeoutMs.
  auto timeout = [&](const char* key, std::uint32_t& out) {
    const auto* n = t.get(key);
    if (n == nullptr) return;
    const auto v = r.integer(*n, prefix + key, 0, kMaxTimeoutMs);
    if (v != 0 && v < kMinTimeoutMs)
      r.fail(n->source(), prefix + key,
             std::to_string(v) + " is below " + std::to_string(kMinTimeoutMs) +
                 " ms (0 turns it off)");
    out = static_cast<std::uint32_t>(v);
  };
  timeout("hung_producer_timeout_ms", o.hung_producer_timeout_ms);
  timeout("slow_consumer_timeout_ms", o.slow_consumer_timeout_ms);
  if (auto n = t.get("policy")) {
    const auto p = r.string(*n, prefix + "policy");
    if (p == "block")
      o.policy = Policy::Block;
    else if (p == "overwrite")
      o.policy = Policy::Overwrite;
    else
      r.fail(n->source(), prefix + "policy", "'" + p + "' is neither \"block\" nor \"overwrite\"");
  }
  if (auto n = t.get("durable")) o.durable = r.boolean(*n, prefix + "durable");
  if (auto n = t.get("fsync")) {
    const auto f = r.string(*n, prefix + "fsync");
    if (f == "never")
      o.fsync = Fsync::Never;
    else if (f == "interval")
      o.fsync = Fsync::Interval;
    else if (f == "always")
      o.fsync = Fsync::Always;
    else
      r.fail(n->source(), prefix + "fsync",
             "'" + f + "' is none of \"never\", \"interval\", \"always\"");
  }
  if (auto n = t.get("fsync_interval_ms"))
    o.fsync_interval_ms =
        static_cast<std::uint32_t>(r.integer(*n, prefix + "fsync_interval_ms", 1, 60000));
  if (auto n = t.get("retention_bytes"))
    o.retention_bytes =
        static_cast<std::uint64_t>(r.integer(*n, prefix + "retention_bytes", 0, 1ll << 60));
  if (auto n = t.get("retention_ms"))
    o.retention_ms =
        static_cast<std::uint64_t>(r.integer(*n, prefix + "retention_ms", 0, 1ll << 40));
  if (auto n = t.get("numa_node")) {
    c.numa_node = static_cast<int>(r.integer(*n, prefix + "numa_node", -1, 4095));
    if (c.numa_node >= 0) o.placement = {Placement::Kind::Node, c.numa_node};
  }
  if (auto n = t.get("acl")) {
    const auto* acl = n->as_table();
    if (acl == nullptr) r.fail(n->source(), prefix + "acl", "must be a table");
    read_acl(r, *acl, prefix + "acl.", c.acl);
  }
  o.mode = c.acl.mode;
  if (auto bad = check_topic(o, c.acl, max_topic_bytes)) r.fail(t.source(), prefix + *bad, "");
  return c;
}

}  // namespace

std::optional<std::string> check_topic(const TopicOptions& o, const control::Acl& acl,
                                       std::uint64_t max_topic_bytes) {
  auto pow2 = [](std::uint64_t v) { return std::has_single_bit(v); };
  if (o.partitions < 1 || o.partitions > 1024) return "partitions: must be 1..1024";
  if (!pow2(o.segment_bytes) || o.segment_bytes < 4096 || o.segment_bytes > (1ull << 30))
    return "segment_bytes: must be a power of two from 4096 to 1 GiB";
  if (!pow2(o.segment_count) || o.segment_count < 2 || o.segment_count > 1024)
    return "segments: must be a power of two from 2 to 1024";
  if (!pow2(o.frame_alignment) || o.frame_alignment < 32 || o.frame_alignment > 4096)
    return "alignment: must be a power of two from 32 to 4096";
  if (o.max_producers < 1 || o.max_producers > 1024) return "max_producers: must be 1..1024";
  if (o.max_consumers < 1 || o.max_consumers > 1024) return "max_consumers: must be 1..1024";
  if (o.policy != Policy::Block && o.policy != Policy::Overwrite) return "policy: unknown";
  auto bad_timeout = [](std::uint32_t ms) {
    return ms != 0 && (ms < kMinTimeoutMs || ms > kMaxTimeoutMs);
  };
  if (bad_timeout(o.hung_producer_timeout_ms))
    return "hung_producer_timeout_ms: must be 0 (never) or " + std::to_string(kMinTimeoutMs) +
           ".." + std::to_string(kMaxTimeoutMs);
  if (bad_timeout(o.slow_consumer_timeout_ms))
    return "slow_consumer_timeout_ms: must be 0 (never) or " + std::to_string(kMinTimeoutMs) +
           ".." + std::to_string(kMaxTimeoutMs);
  if (o.slow_consumer_timeout_ms != 0 && o.policy != Policy::Block)
    return "slow_consumer_timeout_ms: only for policy \"block\" (overwrite never waits for "
           "consumers)";
  if (o.fsync != Fsync::Never && o.fsync != Fsync::Interval && o.fsync != Fsync::Always)
    return "fsync: must be never, interval or always";
  if (o.durable && o.fsync == Fsync::Interval &&
      (o.fsync_interval_ms < 1 || o.fsync_interval_ms > 60000))
    return "fsync_interval_ms: must be 1..60000";
  if (!o.durable && (o.retention_bytes != 0 || o.retention_ms != 0))
    return "retention_bytes, retention_ms: only for a durable topic (its segment files)";
  // Each factor is bounded above (2^30, 2^10, 2^10): the product fits in 64 bits.
  const std::uint64_t total = o.segment_bytes * o.segment_count * o.partitions;
  if (total > max_topic_bytes)
    return "segment_bytes: partitions x segments x segment_bytes is over max_topic_bytes (" +
           std::to_string(max_topic_bytes) + ")";
  if ((acl.mode & ~0777u) != 0) return "acl.mode: bits outside 0777";
  if ((acl.mode & 0002u) != 0) return "acl.mode: world-writable modes (o+w) are refused";
  return std::nullopt;
}

std::string default_data_dir(const std::string& bus) {
  if (::geteuid() == 0) return "/var/lib/shmbus/" + bus;
  const char* state = std::getenv("XDG_STATE_HOME");
  if (state != nullptr && state[0] == '/') return std::string(state) + "/shmbus/" + bus;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.local/state/shmbus/" + bus;
}

Result<Config> load_config(const std::string& path) {
  Reader r(path);
  Config c;
  try {
    toml::table root;
    try {
      root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      const auto& b = e.source().begin;
      throw ConfigError(path + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) +
                        ": (syntax): " + std::string(e.description()));
    }
    r.only(root, "",
           {"bus", "socket", "data_dir", "max_topic_bytes", "spill_file_bytes", "topics"});
    if (auto n = root.get("bus")) {
      c.bus = r.string(*n, "bus");
      if (auto ok = shm::check_name("bus", c.bus); !ok)
        r.fail(n->source(), "bus", ok.error().message);
    }
    if (auto n = root.get("socket")) c.socket = r.string(*n, "socket");
    if (auto n = root.get("data_dir")) c.data_dir = r.string(*n, "data_dir");
    if (auto n = root.get("max_topic_bytes"))
      c.max_topic_bytes =
          static_cast<std::uint64_t>(r.integer(*n, "max_topic_bytes", 1 << 16, 1ll << 40));
    if (auto n = root.get("spill_file_bytes"))
      c.spill_file_bytes = r.power_of_two(*n, "spill_file_bytes", 1 << 20, 1ll << 40);
    if (auto n = root.get("topics")) {
      const auto* a = n->as_array();
      if (a == nullptr || !a->is_array_of_tables())
        r.fail(n->source(), "topics", "must be an array of tables ([[topics]])");
      std::set<std::string> seen;
      for (std::size_t i = 0; i < a->size(); ++i) {
        const std::string prefix = "topics[" + std::to_string(i) + "].";
        const auto& t = *a->get(i)->as_table();
        c.topics.push_back(read_topic(r, t, prefix, c.max_topic_bytes));
        if (!seen.insert(c.topics.back().name).second)
          r.fail(t.get("name")->source(), prefix + "name",
                 "topic '" + c.topics.back().name + "' is declared twice");
      }
    }
  } catch (const ConfigError& e) {
    std::string m = e.what();
    if (m.size() >= 2 && m.compare(m.size() - 2, 2, ": ") == 0) m.resize(m.size() - 2);
    return Error{EINVAL, m};
  }
  return c;
}

}  // namespace shmbus::daemon
