// tools/consumers.hpp — how describe and stat show a partition's cursors:
// anonymous consumers by pid, named cursors by name (held by a pid, or
// parked: nobody holds it, and on a block topic it still holds producers back),
// and a durable partition's spiller watermarks.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

#include "shmbus/options.hpp"
#include "shmbus/topic.hpp"

namespace shmbus::cli {

// Whether pid names a live process (0, a parked cursor's holder, never does).
bool pid_alive(std::uint32_t pid);
// The k-th cursor of p, one line without indentation or newline.
std::string consumer_text(const PartitionInfo& p, std::size_t k, Policy policy);
// The k-th cursor of p: pid, alive, name (null when anonymous), position, lag.
nlohmann::json consumer_json(const PartitionInfo& p, std::size_t k);
// committed, written, durable, disk_start, error ("" when none).
nlohmann::json spill_json(const PartitionInfo::Spill& w);
// The spiller in one line: its watermarks and lag, or why it stopped.
std::string spill_text(const PartitionInfo& p, Policy policy);

}  // namespace shmbus::cli
