// tests/fuzz/fuzz_check.hpp — the fuzz targets' assertion: what must hold
// whatever the input. A failure prints what broke and aborts, which libFuzzer
// reports as a crash and saves the input (and the replay main stops on).
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace shmbus::fuzz {

// Whether [p, p + n) lies inside [base, base + size).
inline bool inside(const void* p, std::size_t n, const void* base, std::size_t size) {
  const auto* b = static_cast<const std::byte*>(base);
  const auto* q = static_cast<const std::byte*>(p);
  if (n == 0) return true;  // an empty view may point anywhere (or nowhere)
  return q >= b && q <= b + size && n <= static_cast<std::size_t>(b + size - q);
}

}  // namespace shmbus::fuzz
