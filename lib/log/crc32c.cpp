#include "log/crc32c.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace shmbus::log {
namespace {

constexpr std::uint32_t kReflected = 0x82F63B78u;

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kReflected : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<std::uint32_t, 256> kTable = make_table();

// Both paths work on the inverted register; the callers invert in and out.
std::uint32_t table_update(std::uint32_t c, const std::byte* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    c = kTable[(c ^ static_cast<std::uint8_t>(p[i])) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t hardware_update(std::uint32_t c, const std::byte* p,
                                                                std::size_t n) noexcept {
  std::uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    c64 = _mm_crc32_u64(c64, word);
  }
  c = static_cast<std::uint32_t>(c64);
  for (; n > 0; --n, ++p) c = _mm_crc32_u8(c, static_cast<std::uint8_t>(*p));
  return c;
}
#endif

// Asked once, on first use (__builtin_cpu_init first: a caller may be a
// static initializer that runs before libgcc's).
bool hardware() noexcept {
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return has;
#else
  return false;
#endif
}

}  // namespace

std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  return ~table_update(~crc, data.data(), data.size());
}

std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc) noexcept {
#if defined(__x86_64__)
  if (hardware()) return ~hardware_update(~crc, data.data(), data.size());
#endif
  return crc32c_portable(data, crc);
}

bool crc32c_hardware() noexcept {
  return hardware();
}

}  // namespace shmbus::log
