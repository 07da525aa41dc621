// daemon/topic.hpp — a topic as shmbusd serves it: its options, its ACL and
// its partitions mapped (the log writable, so that reapers can pad).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "control/protocol.hpp"
#include "log/ring.hpp"
#include "shmbus/options.hpp"

namespace shmbus::daemon {

struct Topic {
  std::string name;
  TopicOptions options;
  int numa_node = -1;
  control::Acl acl;
  std::vector<log::Ring> rings;  // one per partition, log mapped writable (for padding)
};

// The topics a daemon serves, by name.
using Topics = std::map<std::string, std::unique_ptr<Topic>>;

}  // namespace shmbus::daemon
