// shmbus/topic.hpp — create, describe and remove topics in a bus.
//
// A bus is a directory of shared-memory files (default /dev/shm/shmbus/<bus>,
// mode 0750; SHMBUS_SHM_ROOT moves the root). A topic is `partitions`
// partition logs in it. When shmbusd runs for the bus, create and remove are
// requests to it (it checks the caller's rights and records the topic);
// without a daemon, a process that may write the bus directory does them
// itself (but for a durable topic, which needs the daemon's spiller).
// describe reads the files directly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/options.hpp"
#include "shmbus/status.hpp"

namespace shmbus {

struct PartitionInfo {
  std::uint64_t tail = 0;  // next position a producer will claim
  std::uint32_t producers = 0;
  std::uint32_t consumers = 0;
  std::vector<std::uint64_t> consumer_positions;  // of active consumers
  // A snapshot for monitoring (shmbus stat), read without stopping anyone.
  std::uint64_t oldest = 0;                  // the oldest position still in the ring
  std::vector<std::uint32_t> producer_pids;  // of active producers
  std::vector<std::uint32_t> consumer_pids;  // as consumer_positions; 0: a parked named cursor
  std::vector<std::string> consumer_names;   // as consumer_positions; "": anonymous
  // A durable topic's spill watermarks (TopicOptions::durable; lib/log/layout.hpp,
  // SpillState): durable <= written <= committed <= tail; disk_start the
  // oldest position in its segment files; spill_errno nonzero when spilling
  // stopped on that error (a full disk, EIO).
  struct Spill {
    std::uint64_t committed = 0;
    std::uint64_t written = 0;
    std::uint64_t durable = 0;
    std::uint64_t disk_start = 0;
    int spill_errno = 0;
  } spill;
};

struct TopicInfo {
  std::string name;
  TopicOptions options;  // as created (mode, prefault and the like are not recorded)
  std::vector<PartitionInfo> partitions;
};

class Topic {
 public:
  // Fails if the topic exists or an option is out of range (the error names it).
  static Outcome create(std::string_view bus, std::string_view topic, const TopicOptions& options);
  static Result<TopicInfo> describe(std::string_view bus, std::string_view topic);
  // Removes the topic's files; processes that mapped them keep their mappings.
  static Outcome remove(std::string_view bus, std::string_view topic);
  // Deletes a durable named cursor (ConsumerOptions::name) of one partition,
  // so that it no longer holds producers back. ENOENT when there is none of
  // that name, EBUSY while a live consumer holds it. Needs the topic's
  // consumer permission.
  static Outcome delete_cursor(std::string_view bus, std::string_view topic,
                               std::uint32_t partition, std::string_view name);
};

}  // namespace shmbus
