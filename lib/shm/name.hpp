// lib/shm/name.hpp — the names a bus directory's files are made of (bus and
// topic names), checked before any path is built from them.
#pragma once

#include <string_view>

#include "shmbus/status.hpp"

namespace shmbus::shm {

// 1..200 of [A-Za-z0-9._-], not starting with '.'; the error names `what`
// ("bus", "topic") and the name.
Outcome check_name(std::string_view what, std::string_view name);

}  // namespace shmbus::shm
