// shmbus stat [TOPIC...]: a table of partitions and consumers, refreshed like top.
//
// Everything comes from Topic::describe snapshots (no cursor is registered,
// so watching never slows a producer): bytes/s from the tail's delta between
// two snapshots, fill and lag from the consumers' published positions.
// msgs/s: the frames between the two tails are walked in stat's own
// read-only mapping (log/frame_count.hpp), at most kMaxWalk of them; past
// that, or where a lap overwrote the start, the count is scaled from the
// bytes walked to all the bytes published.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "consumers.hpp"
#include "log/frame_count.hpp"
#include "log/ring.hpp"

namespace shmbus::cli {
namespace {

using nlohmann::json;

struct Snapshot {
  std::chrono::steady_clock::time_point at;
  std::int64_t wall_ns = 0;
  std::map<std::string, TopicInfo> topics;  // only those that could be read
  std::vector<std::string> missing;         // named topics that do not exist (now)
};

Snapshot take(const Context& ctx, const std::vector<std::string>& names) {
  Snapshot s;
  s.at = std::chrono::steady_clock::now();
  s.wall_ns = now_ns();
  for (const std::string& n : names.empty() ? list_topics(ctx) : names) {
    auto info = Topic::describe(ctx.bus, n);
    if (info)
      s.topics.emplace(n, std::move(info).value());
    else if (!names.empty())
      s.missing.push_back(n);
  }
  return s;
}

constexpr std::uint64_t kMaxWalk = 100'000;  // frames per partition and refresh

// stat's read-only mappings of the partitions it watches, kept between
// refreshes. A mapping whose file is no longer the one at its path (the topic
// was deleted, or deleted and created again) is dropped: it would pin the old
// file's memory and count the old file's frames.
class Rings {
 public:
  const log::Ring* get(const Context& ctx, const std::string& topic, std::uint32_t p) {
    const std::string path = log::ring_path(bus_dir(ctx), topic, p);
    struct stat now {};
    const bool exists = ::stat(path.c_str(), &now) == 0;
    auto it = rings_.find({topic, p});
    if (it != rings_.end() && (!exists || it->second.inode != now.st_ino))
      rings_.erase(it), it = rings_.end();
    if (it == rings_.end()) {
      if (!exists) return nullptr;
      auto r = log::Ring::open_observer(bus_dir(ctx), topic, p);
      if (!r) return nullptr;
      it = rings_.emplace(std::pair{topic, p}, Mapped{std::move(r).value(), now.st_ino}).first;
    }
    return &it->second.ring;
  }
  // Drops the mappings of topics not in `snapshot`.
  void keep_only(const std::map<std::string, TopicInfo>& topics) {
    std::erase_if(rings_, [&](const auto& e) { return topics.count(e.first.first) == 0; });
  }

 private:
  struct Mapped {
    log::Ring ring;
    ino_t inode;  // of the file when it was mapped (a race with a re-create only costs a refresh)
  };
  std::map<std::pair<std::string, std::uint32_t>, Mapped> rings_;
};

// Messages published per second between two tails of one partition.
std::optional<double> msgs_per_s(const log::Ring& ring, std::uint64_t before, std::uint64_t now,
                                 double dt) {
  if (now == before) return 0.0;
  const std::uint64_t from = std::max(before, ring.oldest_intact(now));
  const log::FrameCount c = log::count_frames(ring, from, now, kMaxWalk);
  if (c.bytes == 0) return std::nullopt;
  return double(c.messages) * double(now - before) / double(c.bytes) / dt;
}

struct Row {
  std::string topic;
  std::uint32_t partition = 0;
  const TopicInfo* info = nullptr;
  const PartitionInfo* now = nullptr;
  std::optional<double> bytes_per_s;  // none: no earlier sample
  std::optional<double> msgs_per_s;   // none: no earlier sample, or nothing readable
  std::optional<double> fill;         // none: no consumer
};

std::vector<Row> rows(const Context& ctx, Rings& rings, const Snapshot& before,
                      const Snapshot& now) {
  std::vector<Row> out;
  const double dt = std::chrono::duration<double>(now.at - before.at).count();
  for (const auto& [name, info] : now.topics) {
    const auto old = before.topics.find(name);
    const std::uint64_t capacity = info.options.segment_bytes * info.options.segment_count;
    for (std::uint32_t p = 0; p < info.partitions.size(); ++p) {
      Row r{name, p, &info, &info.partitions[p], std::nullopt, std::nullopt, std::nullopt};
      const PartitionInfo& part = info.partitions[p];
      if (old != before.topics.end() && p < old->second.partitions.size() && dt > 0 &&
          part.tail >= old->second.partitions[p].tail) {  // a smaller tail: recreated meanwhile
        const std::uint64_t was = old->second.partitions[p].tail;
        r.bytes_per_s = double(part.tail - was) / dt;
        if (const log::Ring* ring = rings.get(ctx, name, p))
          r.msgs_per_s = msgs_per_s(*ring, was, part.tail, dt);
      }
      if (!part.consumer_positions.empty()) {
        const std::uint64_t slowest =
            *std::min_element(part.consumer_positions.begin(), part.consumer_positions.end());
        r.fill = double(part.tail > slowest ? part.tail - slowest : 0) / double(capacity);
      }
      out.push_back(r);
    }
  }
  return out;
}

std::string render_text(const Context& ctx, const Snapshot& now, const std::vector<Row>& rs,
                        const std::string& interval) {
  std::string s = "shmbus stat  bus " + ctx.bus + "  " + format_time(now.wall_ns).substr(0, 19) +
                  "Z  every " + interval + "\n";
  for (const std::string& m : now.missing) s += "topic '" + m + "' does not exist (now)\n";
  if (rs.empty()) {
    if (now.missing.empty()) s += "no topics in bus '" + ctx.bus + "' (" + bus_dir(ctx) + ")\n";
    return s;
  }
  char line[512];
  std::snprintf(line, sizeof line, "%-20s %4s %-9s %10s %14s %10s %12s %7s  %s\n", "TOPIC", "PART",
                "POLICY", "CAPACITY", "TAIL", "MSGS/S", "BYTES/S", "FILL", "PRODUCER PIDS");
  s += line;
  for (const Row& r : rs) {
    const TopicOptions& o = r.info->options;
    std::string rate = r.bytes_per_s ? human_bytes(*r.bytes_per_s) : "-";
    char msgs[32] = "-";
    if (r.msgs_per_s) std::snprintf(msgs, sizeof msgs, "%.0f", *r.msgs_per_s);
    char fill[16] = "-";
    if (r.fill) {
      if (*r.fill > 1.0)
        std::snprintf(fill, sizeof fill, "lapped");
      else
        std::snprintf(fill, sizeof fill, "%.1f%%", *r.fill * 100);
    }
    std::string pids;
    for (std::uint32_t pid : r.now->producer_pids)
      pids += (pids.empty() ? "" : " ") + std::to_string(pid);
    std::snprintf(line, sizeof line, "%-20s %4u %-9s %10s %14llu %10s %12s %7s  %s\n",
                  r.topic.c_str(), r.partition, policy_name(o.policy),
                  human_bytes(double(o.segment_bytes * o.segment_count)).c_str(),
                  static_cast<unsigned long long>(r.now->tail), msgs, rate.c_str(), fill,
                  pids.empty() ? "-" : pids.c_str());
    s += line;
    if (o.durable) s += std::string(26, ' ') + spill_text(*r.now, o.policy) + "\n";
    for (std::size_t k = 0; k < r.now->consumer_positions.size(); ++k)
      s += std::string(26, ' ') + consumer_text(*r.now, k, o.policy) + "\n";
  }
  return s;
}

std::string render_json(const Context& ctx, const Snapshot& now, const std::vector<Row>& rs) {
  json parts = json::array();
  for (const Row& r : rs) {
    json consumers = json::array();
    for (std::size_t k = 0; k < r.now->consumer_positions.size(); ++k)
      consumers.push_back(consumer_json(*r.now, k));
    parts.push_back({{"topic", r.topic},
                     {"partition", r.partition},
                     {"policy", policy_name(r.info->options.policy)},
                     {"capacity", r.info->options.segment_bytes * r.info->options.segment_count},
                     {"tail", r.now->tail},
                     {"msgs_per_s", r.msgs_per_s ? json(*r.msgs_per_s) : json(nullptr)},
                     {"bytes_per_s", r.bytes_per_s ? json(*r.bytes_per_s) : json(nullptr)},
                     {"fill", r.fill ? json(*r.fill) : json(nullptr)},
                     {"producer_pids", r.now->producer_pids},
                     {"spill", r.info->options.durable ? spill_json(r.now->spill) : json(nullptr)},
                     {"consumers", consumers}});
  }
  json j = {{"bus", ctx.bus},
            {"time", format_time(now.wall_ns)},
            {"partitions", parts},
            {"missing", now.missing}};
  return j.dump() + "\n";
}

}  // namespace

void run_stat(const Context& ctx, const StatOptions& o) {
  const auto interval = *parse_duration(o.interval, nullptr);  // checked by the command line
  // A named topic that does not exist at the start is a mistake; one that
  // goes away later is news, shown in the table.
  for (const std::string& t : o.topics) (void)describe_or_fail(ctx, t);
  const bool tty = ::isatty(STDOUT_FILENO) == 1 && !o.json;

  Rings rings;
  Snapshot before = take(ctx, o.topics);
  if (o.once) {
    sleep_for(interval);
  } else if (tty) {  // something to look at until the first rate is in
    if (!write_stdout("\x1b[H\x1b[2J" +
                      render_text(ctx, before, rows(ctx, rings, before, before), o.interval)))
      return;
    sleep_for(interval);
  }
  while (!stop_requested()) {
    Snapshot now = take(ctx, o.topics);
    const std::vector<Row> rs = rows(ctx, rings, before, now);
    rings.keep_only(now.topics);
    std::string out = o.json ? render_json(ctx, now, rs) : render_text(ctx, now, rs, o.interval);
    if (tty)
      out = "\x1b[H\x1b[2J" + out;  // home, clear: redraw in place
    else if (!o.once && !o.json)
      out += "\n";  // plain repeated tables, one blank line apart
    if (!write_stdout(out)) return;
    if (o.once) return;
    before = std::move(now);
    sleep_for(interval);
  }
}

}  // namespace shmbus::cli
