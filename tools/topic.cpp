// shmbus topic create | list | describe | delete
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "consumers.hpp"
#include "log/ring.hpp"
#include "log/segment_log.hpp"
#include "shmbus/topic.hpp"

namespace shmbus::cli {
namespace {

using nlohmann::json;

std::string mode_of(const Context& ctx, const std::string& topic) {
  struct stat st {};
  if (::stat(log::ring_path(bus_dir(ctx), topic, 0).c_str(), &st) != 0) return "?";
  char b[8];
  std::snprintf(b, sizeof b, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return b;
}

const char* fsync_name(Fsync f) {
  return f == Fsync::Never ? "never" : f == Fsync::Always ? "always" : "interval";
}

json options_json(const TopicInfo& info) {
  const TopicOptions& o = info.options;
  return {{"name", info.name},
          {"partitions", o.partitions},
          {"policy", policy_name(o.policy)},
          {"segment_bytes", o.segment_bytes},
          {"segment_count", o.segment_count},
          {"capacity", o.segment_bytes * o.segment_count},
          {"frame_alignment", o.frame_alignment},
          {"max_producers", o.max_producers},
          {"max_consumers", o.max_consumers},
          {"exclusive_producer", o.exclusive_producer},
          {"hung_producer_timeout_ms", o.hung_producer_timeout_ms},
          {"slow_consumer_timeout_ms", o.slow_consumer_timeout_ms},
          {"durable", o.durable},
          {"fsync", fsync_name(o.fsync)},
          {"fsync_interval_ms", o.fsync_interval_ms},
          {"retention_bytes", o.retention_bytes},
          {"retention_ms", o.retention_ms}};
}

std::string geometry(const TopicOptions& o) {
  return std::to_string(o.segment_count) + " x " + human_bytes(double(o.segment_bytes)) + " = " +
         human_bytes(double(o.segment_bytes * o.segment_count));
}

}  // namespace

void run_topic_create(const Context& ctx, const TopicCreateOptions& c) {
  TopicOptions o;
  o.partitions = c.partitions;
  o.segment_bytes = *parse_size(c.segment_bytes, nullptr);  // checked by the command line
  o.segment_count = c.segments;
  o.policy = c.policy == "overwrite" ? Policy::Overwrite : Policy::Block;
  o.frame_alignment = c.alignment;
  o.max_producers = c.max_producers;
  o.max_consumers = c.max_consumers;
  o.exclusive_producer = c.exclusive;
  o.hung_producer_timeout_ms = c.hung_producer_timeout_ms;
  o.slow_consumer_timeout_ms = c.slow_consumer_timeout_ms;
  o.durable = c.durable;
  o.fsync = c.fsync == "never"    ? Fsync::Never
            : c.fsync == "always" ? Fsync::Always
                                  : Fsync::Interval;
  o.fsync_interval_ms = c.fsync_interval_ms;
  o.retention_bytes = *parse_size(c.retention_bytes, nullptr);  // checked by the command line
  o.retention_ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  *parse_duration(c.retention_time, nullptr))
                                                  .count());
  o.huge_pages = c.huge_pages;
  o.lock_memory = c.lock;
  o.mode = static_cast<mode_t>(std::stoul(c.mode, nullptr, 8));
  if (c.numa_node == "auto") {
    o.placement.kind = Placement::Kind::CallerNode;
  } else if (!c.numa_node.empty()) {
    o.placement.kind = Placement::Kind::Node;
    o.placement.node = std::stoi(c.numa_node);
  }
  if (auto made = Topic::create(ctx.bus, c.name, o); !made) {
    const Error& e = made.error();
    if (e.code == EEXIST)
      fail(kFailed, "topic '" + c.name + "' already exists in bus '" + ctx.bus +
                        "'; delete it first with: shmbus --bus " + ctx.bus + " topic delete " +
                        c.name);
    fail(kFailed, "cannot create topic '" + c.name + "': " + e.message +
                      (c.numa_node.empty() ? "" : " (--numa-node; shmbus doctor lists the nodes)"));
  }
  (void)write_stdout("created topic " + c.name + ": " + std::to_string(o.partitions) +
                     " partition(s) of " + geometry(o) + ", policy " + policy_name(o.policy) +
                     "\n");
}

void run_topic_list(const Context& ctx, const TopicListOptions& o) {
  json all = json::array();
  std::string text;
  char line[512];
  for (const std::string& name : list_topics(ctx)) {
    auto info = Topic::describe(ctx.bus, name);
    if (!info) {  // half-deleted, damaged, or another layout version: show it, say why
      if (o.json) {
        all.push_back({{"name", name}, {"error", info.error().message}});
      } else {
        std::snprintf(line, sizeof line, "%-24s (unreadable: %s)\n", name.c_str(),
                      info.error().message.c_str());
        text += line;
      }
      continue;
    }
    const TopicOptions& t = info->options;
    if (o.json) {
      all.push_back(options_json(*info));
      continue;
    }
    if (text.empty()) {
      std::snprintf(line, sizeof line, "%-24s %10s %-9s %14s %9s %9s\n", "TOPIC", "PARTITIONS",
                    "POLICY", "CAPACITY/PART", "PRODUCERS", "CONSUMERS");
      text += line;
    }
    std::uint32_t producers = 0, consumers = 0;
    for (const PartitionInfo& p : info->partitions) {
      producers += p.producers;
      consumers += p.consumers;
    }
    std::snprintf(line, sizeof line, "%-24s %10u %-9s %14s %9u %9u\n", name.c_str(), t.partitions,
                  policy_name(t.policy),
                  human_bytes(double(t.segment_bytes * t.segment_count)).c_str(), producers,
                  consumers);
    text += line;
  }
  if (o.json) {
    (void)write_stdout(all.dump() + "\n");
  } else if (text.empty()) {
    (void)write_stdout("no topics in bus '" + ctx.bus + "' (" + bus_dir(ctx) + ")\n");
  } else {
    (void)write_stdout(text);
  }
}

// A durable partition's segment files, through the link the spiller makes
// (<bus dir>/<topic>.<p>.seg): how many, and their bytes. Empty when they
// cannot be listed (no spiller yet, or no right to the data directory).
struct Files {
  bool listed = false;
  std::uint64_t segments = 0, bytes = 0;
};
Files segment_files(const Context& ctx, const std::string& topic, std::size_t partition) {
  const std::string dir = bus_dir(ctx) + "/" + topic + "." + std::to_string(partition) + ".seg";
  auto bases = log::list_segments(dir);
  Files f;
  if (!bases) return f;
  f.listed = true;
  for (std::uint64_t b : *bases) {
    struct stat st {};
    if (::stat((dir + "/" + log::segment_name(b)).c_str(), &st) != 0) continue;
    ++f.segments;
    f.bytes += static_cast<std::uint64_t>(st.st_size);
  }
  return f;
}

void run_topic_describe(const Context& ctx, const TopicDescribeOptions& o) {
  const TopicInfo info = describe_or_fail(ctx, o.name);
  const TopicOptions& t = info.options;
  const std::uint64_t capacity = t.segment_bytes * t.segment_count;
  if (o.json) {
    json j = options_json(info);
    j["bus"] = ctx.bus;
    j["directory"] = bus_dir(ctx);
    j["mode"] = mode_of(ctx, info.name);
    json parts = json::array();
    for (std::size_t i = 0; i < info.partitions.size(); ++i) {
      const PartitionInfo& p = info.partitions[i];
      json consumers = json::array();
      for (std::size_t k = 0; k < p.consumer_positions.size(); ++k)
        consumers.push_back(consumer_json(p, k));
      json spill = json();
      if (info.options.durable) {
        spill = spill_json(p.spill);
        const Files f = segment_files(ctx, info.name, i);
        spill["segments"] = f.listed ? json(f.segments) : json();
        spill["file_bytes"] = f.listed ? json(f.bytes) : json();
      }
      parts.push_back({{"partition", i},
                       {"tail", p.tail},
                       {"oldest", p.oldest},
                       {"producers", p.producer_pids},
                       {"spill", spill},
                       {"consumers", consumers}});
    }
    j["partition_state"] = parts;
    (void)write_stdout(j.dump() + "\n");
    return;
  }
  std::string s;
  s += "topic          " + info.name + " (bus " + ctx.bus + ", " + bus_dir(ctx) + ")\n";
  s += "partitions     " + std::to_string(t.partitions) + "\n";
  s += "policy         " + std::string(policy_name(t.policy)) + "\n";
  s +=
      "ring           " + geometry(t) + " per partition (" + std::to_string(capacity) + " bytes)\n";
  s += "alignment      " + std::to_string(t.frame_alignment) + "\n";
  s += "producers      at most " + std::to_string(t.max_producers) +
       (t.exclusive_producer ? ", exclusive (one at a time)" : "") + "\n";
  s += "consumers      at most " + std::to_string(t.max_consumers) + "\n";
  auto never = [](std::uint32_t ms) {
    return ms == 0 ? std::string("never") : std::to_string(ms) + " ms";
  };
  s += "supervision    hung producer " + never(t.hung_producer_timeout_ms) + ", slow consumer " +
       never(t.slow_consumer_timeout_ms) + " (by shmbusd)\n";
  if (t.durable)
    s += std::string("durability     durable, fsync ") + fsync_name(t.fsync) +
         (t.fsync == Fsync::Interval ? " every " + std::to_string(t.fsync_interval_ms) + " ms"
                                     : std::string()) +
         " (by shmbusd)\n";
  if (t.durable)
    s += "retention      " +
         (t.retention_bytes == 0 && t.retention_ms == 0
              ? std::string("everything (no limit)")
              : (t.retention_bytes != 0 ? human_bytes(double(t.retention_bytes)) + " of files"
                                        : std::string("")) +
                    (t.retention_bytes != 0 && t.retention_ms != 0 ? ", " : "") +
                    (t.retention_ms != 0 ? std::to_string(t.retention_ms) + " ms" : "")) +
         "\n";
  s += "mode           " + mode_of(ctx, info.name) + "\n";
  for (std::size_t i = 0; i < info.partitions.size(); ++i) {
    const PartitionInfo& p = info.partitions[i];
    s += "partition " + std::to_string(i) + "    tail " + std::to_string(p.tail) + ", oldest " +
         std::to_string(p.oldest) + ", " + std::to_string(p.producers) + " producer(s)";
    for (std::size_t k = 0; k < p.producer_pids.size(); ++k)
      s += (k == 0 ? " pid " : ",") + std::to_string(p.producer_pids[k]);
    s += ", " + std::to_string(p.consumers) + " consumer(s)\n";
    if (t.durable) {
      const PartitionInfo::Spill& w = p.spill;
      s += "  spill        on disk from " + std::to_string(w.disk_start) + "; committed " +
           std::to_string(w.committed) + ", written " + std::to_string(w.written) + ", durable " +
           std::to_string(w.durable) +
           (w.spill_errno != 0 ? std::string(", FAILED: ") + std::strerror(w.spill_errno) : "") +
           "\n";
      const Files f = segment_files(ctx, info.name, i);
      if (f.listed)
        s += "  files        " + std::to_string(f.segments) + " segment file(s), " +
             human_bytes(double(f.bytes)) + "\n";
    }
    for (std::size_t k = 0; k < p.consumer_positions.size(); ++k)
      s += "  " + consumer_text(p, k, t.policy) + "\n";
  }
  (void)write_stdout(s);
}

void run_topic_delete(const Context& ctx, const TopicDeleteOptions& o) {
  // Describe only to tell who still maps it; a damaged or half-created topic
  // cannot be described but must still be removable (Topic::remove goes by name).
  std::uint32_t attached = 0;
  if (auto info = Topic::describe(ctx.bus, o.name))
    for (const PartitionInfo& p : info->partitions) attached += p.producers + p.consumers;
  if (auto removed = Topic::remove(ctx.bus, o.name); !removed) {
    if (removed.error().code == ENOENT) (void)describe_or_fail(ctx, o.name);  // the usual message
    fail(kFailed, "cannot delete topic '" + o.name + "': " + removed.error().message);
  }
  std::string s = "deleted topic " + o.name + "\n";
  if (attached > 0)
    s += std::to_string(attached) +
         " producer/consumer attachment(s) still map it and keep their memory until they exit\n";
  (void)write_stdout(s);
}

void run_cursor_delete(const Context& ctx, const CursorDeleteOptions& o) {
  const TopicInfo info = describe_or_fail(ctx, o.topic);
  check_partition(info, o.partition);
  if (auto ok = Topic::delete_cursor(ctx.bus, o.topic, o.partition, o.name); !ok)
    fail(ok.error().code == ENOENT ? kNotFound : kFailed,
         "cannot delete cursor: " + ok.error().message);
  (void)write_stdout("deleted cursor '" + o.name + "' of " + o.topic + "." +
                     std::to_string(o.partition) + "\n");
}

}  // namespace shmbus::cli
