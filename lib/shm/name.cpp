#include "shm/name.hpp"

#include <cerrno>
#include <string>

namespace shmbus::shm {

Outcome check_name(std::string_view what, std::string_view name) {
  bool ok = !name.empty() && name.size() <= 200 && name.front() != '.';
  for (char c : name)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-');
  if (!ok)
    return Error{EINVAL, std::string(what) + " name '" + std::string(name) +
                             "' is invalid: use 1..200 of [A-Za-z0-9._-], not starting with '.'"};
  return Done{};
}

}  // namespace shmbus::shm
