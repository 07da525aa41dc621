#include "log/topic_files.hpp"

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "log/ring.hpp"
#include "shm/file.hpp"

namespace shmbus::log {

Outcome create_topic_files(const std::string& dir, std::string_view topic,
                           const TopicOptions& options) {
  for (std::uint32_t p = 0; p < options.partitions; ++p) {
    if (auto made = Ring::create(dir, topic, p, options); !made) {
      for (std::uint32_t q = 0; q < p; ++q) {  // all partitions or none
        (void)shm::remove_file(ring_path(dir, topic, q));
        (void)shm::remove_file(cursor_path(dir, topic, q));
      }
      return made.error();
    }
  }
  return Done{};
}

Outcome remove_topic_files(const std::string& dir, std::string_view topic) {
  // By name, without opening anything: a topic whose creator died between
  // its files, or whose files are damaged or partly gone, must still be
  // removable. Every `<topic>.<p>.log`, `.cur` and `.seg` (the link to a
  // durable partition's segment files) in the directory goes, not
  // partitions 0.. up to the first missing one; a file that cannot be
  // removed does not stop the others, and the first such error is returned.
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr)
    return Error{errno, "cannot read directory " + dir + ": " + std::strerror(errno)};
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view n = e->d_name;
    if (n.size() <= topic.size() + 1 || n.substr(0, topic.size()) != topic ||
        n[topic.size()] != '.')
      continue;
    const std::string_view rest = n.substr(topic.size() + 1);  // "<p>.log" or "<p>.cur"
    const std::size_t dot = rest.find('.');
    if (dot == 0 || dot == std::string_view::npos || dot > 4) continue;
    const std::string_view digits = rest.substr(0, dot), suffix = rest.substr(dot);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    if (suffix == ".log" || suffix == ".cur" || suffix == ".seg") names.emplace_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  std::optional<Error> first_error;
  std::uint32_t removed = 0;
  for (const std::string& n : names) {
    auto gone = shm::remove_file(dir + "/" + n);
    if (gone)
      ++removed;
    else if (gone.error().code != ENOENT && !first_error)
      first_error = gone.error();
  }
  if (first_error) return *first_error;
  if (removed == 0)
    return Error{ENOENT, "topic " + std::string(topic) + " does not exist in " + dir};
  return Done{};
}

}  // namespace shmbus::log
