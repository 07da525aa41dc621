// tools/commands.hpp — the subcommands of the `shmbus` tool, each an options
// struct (filled by the command line in main.cpp) and a run function.
//
// A run function returns normally on success (exit 0) and throws cli::Failure
// (see util.hpp) otherwise. Until the daemon exists, every command works on
// the bus directory directly through the library.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util.hpp"

namespace shmbus::cli {

// --- topic create | list | describe | delete (topic.cpp) ---

struct TopicCreateOptions {
  std::string name;
  std::uint32_t partitions = 1;
  std::string segment_bytes = "1MiB";
  std::uint32_t segments = 4;
  std::string policy = "block";
  std::uint32_t alignment = 64;
  std::uint32_t max_producers = 16;
  std::uint32_t max_consumers = 16;
  bool exclusive = false;
  std::uint32_t hung_producer_timeout_ms = 1000;
  std::uint32_t slow_consumer_timeout_ms = 0;
  bool durable = false;
  std::string fsync = "interval";
  std::uint32_t fsync_interval_ms = 100;
  std::string retention_bytes = "0";  // a size; 0: no limit
  std::string retention_time = "0";   // a duration; 0: no limit
  std::string mode = "0640";
  bool huge_pages = false;
  bool lock = false;
  std::string numa_node;  // empty: anywhere; "auto": the caller's node; or a node number
};
void run_topic_create(const Context& ctx, const TopicCreateOptions& o);

struct TopicListOptions {
  bool json = false;
};
void run_topic_list(const Context& ctx, const TopicListOptions& o);

struct TopicDescribeOptions {
  std::string name;
  bool json = false;
};
void run_topic_describe(const Context& ctx, const TopicDescribeOptions& o);

struct TopicDeleteOptions {
  std::string name;
};
void run_topic_delete(const Context& ctx, const TopicDeleteOptions& o);

struct CursorDeleteOptions {
  std::string topic;
  std::string name;
  std::uint32_t partition = 0;
};
void run_cursor_delete(const Context& ctx, const CursorDeleteOptions& o);

// --- publish (publish.cpp) ---

struct PublishOptions {
  std::string topic;
  std::vector<std::string> messages;  // none: one message per line of stdin
  std::uint32_t partition = 0;
  std::string key;
  std::vector<std::string> headers;  // "name[:type]=value" (header.hpp)
  std::string timeout = "5s";        // how long to retry while the partition is Full
  bool no_timestamp = false;         // ProducerOptions::timestamps = false
};
void run_publish(const Context& ctx, const PublishOptions& o);

// --- tail (tail.cpp) ---

struct TailOptions {
  std::string topic;
  std::uint32_t partition = 0;
  std::string from;  // beginning | end | POSITION | TIME; empty: beginning, or end with follow
  bool follow = false;
  std::string format = "text";  // text | hex | json
  std::uint64_t count = 0;      // 0: no limit
  bool gating = false;          // take a cursor slot that holds producers back (block)
  std::string name;             // a durable named cursor (implies gating)
};
void run_tail(const Context& ctx, const TailOptions& o);

// --- replay (replay.cpp) ---

struct ReplayOptions {
  std::string topic;
  std::uint32_t partition = 0;
  std::string from = "beginning";  // as tail's --from
  std::string to = "end";          // end (the tail when replay starts) | POSITION | TIME
  std::string into;                // the destination topic
  std::uint32_t into_partition = 0;
  double speed = 0;            // 0: as fast as possible; 1: the recorded pace; 10: ten times it
  std::uint64_t count = 0;     // 0: no limit
  std::string timeout = "5s";  // how long to retry while the destination is Full
  bool json = false;
};
void run_replay(const Context& ctx, const ReplayOptions& o);

// --- stat (stat.cpp) ---

struct StatOptions {
  std::vector<std::string> topics;  // none: every topic of the bus
  std::string interval = "1s";
  bool once = false;
  bool json = false;
};
void run_stat(const Context& ctx, const StatOptions& o);

// --- doctor (doctor.cpp) ---

struct DoctorOptions {
  bool json = false;
};
void run_doctor(const Context& ctx, const DoctorOptions& o);

// --- bench (bench.cpp) ---

struct BenchOptions {
  std::string mode = "rtt";  // rtt | one-way
  std::vector<std::uint32_t> sizes{32, 256, 1024};
  std::vector<int> cpus{0, 1};
  std::string wait = "spin";     // spin | yield | futex
  std::string policy = "block";  // block | overwrite
  bool durable = false;          // the topics spilled by shmbusd while measured
  double rate = 0;               // messages (round trips) per second; 0: back-to-back
  std::uint64_t messages = 100'000;
  std::string duration;  // instead of messages
  std::uint64_t warmup = 10'000;
  std::uint64_t timeout = 300;  // seconds
  bool json = false;
  std::string hgrm;  // file prefix
  bool quick = false;
};
void run_bench(const Context& ctx, const BenchOptions& o);

}  // namespace shmbus::cli
