// bench/harness/failure.hpp — how the benchmark harness reports a set-up
// failure: throw Failure (fail()); the program's main prints it, cleans up
// and exits 1. Also printf-style formatting into a std::string.
#pragma once

#include <stdexcept>
#include <string>

namespace shmbus::bench {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& what);

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace shmbus::bench
