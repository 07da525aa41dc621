// daemon/config.hpp — shmbusd's configuration: defaults that work with no
// file at all, or a TOML file (toml++) that names the bus and declares topics.
//
//   bus = "default"                      # [A-Za-z0-9._-], 1..200
//   socket = "/run/shmbus/default.sock"  # default: $XDG_RUNTIME_DIR/shmbus/<bus>.sock
//                                        #          or /run/shmbus/<bus>.sock
//   data_dir = "/var/lib/shmbus/default" # durable topics' segment files; default:
//                                        # /var/lib/shmbus/<bus> as root, else
//                                        # $XDG_STATE_HOME (~/.local/state)/shmbus/<bus>
//   max_topic_bytes = 4294967296         # refuse topics whose rings exceed this
//   spill_file_bytes = 1073741824        # positions per segment file (power of two, >= 1 MiB)
//
//   [[topics]]
//   name = "prices"
//   partitions = 1            # 1..1024
//   segment_bytes = 1048576   # power of two, 4 KiB..1 GiB
//   segments = 4              # power of two, 2..1024
//   policy = "block"          # or "overwrite"
//   alignment = 64            # frame alignment, power of two, 32..4096
//   numa_node = -1            # -1 (anywhere) or a node number
//   max_producers = 16
//   max_consumers = 16
//   exclusive_producer = false
//   hung_producer_timeout_ms = 1000  # revoke a claim open this long; 0 = never
//   slow_consumer_timeout_ms = 0     # block: evict a cursor that holds producers
//                                    # back this long; 0 = never (the default)
//   durable = false           # record every frame in segment files (the spiller)
//   fsync = "interval"        # "never" | "interval" | "always"
//   fsync_interval_ms = 100   # with "interval": 1..60000
//   retention_bytes = 0       # durable: delete the oldest segment files past this; 0 = no limit
//   retention_ms = 0          # durable: ... and those last written longer ago; 0 = no limit
//   [topics.acl]
//   owner = "root"            # user name or uid
//   group = "root"            # group name or gid
//   mode = "0640"             # octal string or integer; o+w is refused
//   producer_users = ["alice", 1001]
//   producer_groups = ["feeds"]
//   consumer_users = []
//   consumer_groups = ["traders"]
//
// Unknown keys are errors. Every error names the file, line, column and key:
//   "shmbusd.toml:7:17: topics[0].segment_bytes: must be a power of two ..."
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "control/protocol.hpp"
#include "shmbus/options.hpp"
#include "shmbus/status.hpp"

namespace shmbus::daemon {

// Supervision timeouts are 0 (never) or in this range, in milliseconds.
inline constexpr std::int64_t kMinTimeoutMs = 10;
inline constexpr std::int64_t kMaxTimeoutMs = 86'400'000;  // a day

struct TopicConfig {
  std::string name;
  TopicOptions options;
  int numa_node = -1;
  control::Acl acl;
};

struct Config {
  std::string bus = "default";
  std::string socket;    // empty: the default path for the bus
  std::string data_dir;  // empty: the default for the bus (default_data_dir)
  std::uint64_t max_topic_bytes = 4ull << 30;
  // Positions per segment file of a durable partition (at least its ring
  // segment): a power of two, 1 MiB..1 TiB.
  std::uint64_t spill_file_bytes = 1ull << 30;
  std::vector<TopicConfig> topics;
};

// /var/lib/shmbus/<bus> as root, else $XDG_STATE_HOME/shmbus/<bus>
// ($HOME/.local/state when XDG_STATE_HOME is unset or not absolute).
std::string default_data_dir(const std::string& bus);

// Reads and checks `path`. The Error's message is "file:line:col: key: what".
Result<Config> load_config(const std::string& path);

// Checks topic options and an ACL as the daemon accepts them from clients;
// returns the name of the bad field and why ("segment_bytes: must be ...").
std::optional<std::string> check_topic(const TopicOptions& o, const control::Acl& acl,
                                       std::uint64_t max_topic_bytes);

}  // namespace shmbus::daemon
