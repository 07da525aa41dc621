#include "failure.hpp"

#include <cstdarg>
#include <cstdio>

namespace shmbus::bench {

void fail(const std::string& what) {
  throw Failure(what);
}

std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

}  // namespace shmbus::bench
