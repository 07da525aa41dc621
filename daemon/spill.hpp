// daemon/spill.hpp — shmbusd's spiller: it records every durable partition
// (TopicOptions::durable) in segment files (lib/log/segment_log.hpp) under
// the data directory, <data_dir>/<topic>/<partition>/, with io_uring.
//
// One thread of its own, off the conductor's (the conductor only posts the
// set of durable partitions and deletions to it), with one io_uring. Per
// partition it maps the ring itself (so a topic deleted meanwhile stays
// mapped until the spiller lets go) and holds the durable named cursor
// kSpillCursor, taken over at every start.
//
// The path of a frame, and who may read which word when:
//
//   ring [next ..)      walk settled frames (look), copy them into a
//                       4 KiB-aligned staging buffer behind a BatchHeader
//                       (up to kStagingBytes); `overwrite`, or below the
//                       join: reload the tail after the copy, a lap means
//                       the copy may be torn: a Gap batch instead
//   committed = next    (SpillState, release)
//   place + write       SegmentLog::place gives file and offset; an io_uring
//                       write, up to kDepth in flight per partition
//   completions         unordered: `written` moves over the completed
//                       prefix only (in submission order), then the cursor
//                       follows it (release): only now may a `block`
//                       producer reuse those bytes, which are in the page
//                       cache, safe from any process's death
//   fdatasync           submitted after the writes it covers were seen
//                       complete (so it covers them); its completion moves
//                       `durable` to the `written` it was submitted for.
//                       fsync = always: after every completed write;
//                       interval: every fsync_interval_ms; never: durable
//                       follows written (safe against process crashes only)
//   checkpoint          at most every kCheckpointPeriod, at a durable mark
//
// A write or fdatasync that fails (EIO, ENOSPC) stops the partition: its
// watermarks freeze, failed_errno says why (`shmbus topic describe`), and
// on `block` producers are held back by its cursor from then on. What was
// written but not yet durable when an fdatasync failed is in neither the
// ring (the cursor follows `written`, so producers reused those bytes) nor
// surely on disk: durable never covered it, and wait_durable never said
// Ok for it. (Following `durable` instead would make the ring hold a whole
// fsync interval of data.) An fsync is never retried: Linux reports a
// writeback error once. A restart of shmbusd recovers the files
// (SegmentLog::open), fdatasyncs the last one, and goes on.
//
// A producer that died holding an unwritten claim leaves a hole that no
// reaper can pad (layout.hpp, "Abandoned claims"); after kAbandonWait the
// spiller proves it (Ring::abandoned_until) and records a Pad frame there in
// the file (never in the ring), as consumers skip it.
//
// A durable topic is created with the cursor parked at 0 (Ring::create), so
// producers are held back from the first byte, before the spiller runs.
// Restart: the cursor kept its position P (it gates `block` producers at P
// all the while); recovery says the files end at E. E >= P: the spiller
// goes on at E (what lies between was written, its cursor not yet moved).
// E < P (files damaged and cut): it goes on at E if the ring still holds E,
// else records the lost range as a Gap.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "service.hpp"

namespace shmbus::daemon {

class SpillService final : public Service {
 public:
  // bus_dir: where the rings are; data_dir: where segment files go.
  // span_bytes: positions per segment file (at least a ring segment).
  SpillService(std::string bus_dir, std::string data_dir, std::uint64_t span_bytes);
  // Stops the thread: in-flight I/O completes, every partition is synced
  // and closed cleanly (a clean checkpoint), its cursor parked.
  ~SpillService() override;

  void start() override;
  void served(const Topics& topics) override;
  void deleted(const std::string& topic) override;
  std::chrono::nanoseconds period() const override { return {}; }
  void on_tick(const Topics&, Clock::time_point) override {}
  void add_stats(control::DaemonStats& stats) const override;

  struct Wanted {
    std::string topic;
    std::uint32_t partition;
  };
  struct Shared;  // what the conductor posts, and the thread's counters

 private:
  std::unique_ptr<Shared> shared_;
  std::thread thread_;
};

}  // namespace shmbus::daemon
