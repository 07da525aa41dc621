// lib/log/topic_files.hpp — a topic's files in a bus directory, made and
// removed directly: the daemon's way, and the embedded (no-daemon) path of
// shmbus::Topic.
#pragma once

#include <string>
#include <string_view>

#include "shmbus/options.hpp"
#include "shmbus/status.hpp"

namespace shmbus::log {

// Creates every partition's ring and cursor files, or none.
Outcome create_topic_files(const std::string& dir, std::string_view topic,
                           const TopicOptions& options);
// Removes them by name, without opening anything: a topic whose creator died
// between its files, or whose files are damaged, must still be removable.
Outcome remove_topic_files(const std::string& dir, std::string_view topic);

}  // namespace shmbus::log
