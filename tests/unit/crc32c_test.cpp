// CRC32C against published check values (RFC 3720, B.4) and the two paths
// (instruction, table) against each other.
#include <gtest/gtest.h>

#include <random>
#include <string_view>
#include <vector>

#include "log/crc32c.hpp"

namespace shmbus::log {
namespace {

std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

TEST(Crc32c, MatchesPublishedCheckValues) {
  EXPECT_EQ(crc32c(as_bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c_portable(as_bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c({}), 0u);
  std::vector<std::byte> zeros(32, std::byte{0}), ones(32, std::byte{0xff}), up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<std::byte>(i);
    down[i] = static_cast<std::byte>(31 - i);
  }
  for (auto f : {&crc32c, &crc32c_portable}) {
    EXPECT_EQ(f(zeros, 0), 0x8A9136AAu);
    EXPECT_EQ(f(ones, 0), 0x62A8AB43u);
    EXPECT_EQ(f(up, 0), 0x46DD794Eu);
    EXPECT_EQ(f(down, 0), 0x113FDB5Cu);
  }
}

TEST(Crc32c, BothPathsAgreeAtEveryLengthAndAlignmentAndContinue) {
  std::mt19937_64 rng(12345);
  std::vector<std::byte> buf(4096 + 16);
  for (auto& b : buf) b = static_cast<std::byte>(rng());
  for (std::size_t len = 0; len <= 300; ++len) {
    for (std::size_t off = 0; off < 9; ++off) {
      const std::span<const std::byte> s(buf.data() + off, len);
      const std::uint32_t whole = crc32c(s);
      ASSERT_EQ(whole, crc32c_portable(s)) << "len " << len << " off " << off;
      const std::size_t cut = len / 3;
      ASSERT_EQ(crc32c(s.subspan(cut), crc32c(s.first(cut))), whole) << "len " << len;
    }
  }
  EXPECT_EQ(crc32c(buf), crc32c_portable(buf));
}

TEST(Crc32c, OneFlippedBitChangesIt) {
  std::vector<std::byte> buf(4096, std::byte{0x5a});
  const std::uint32_t clean = crc32c(buf);
  for (std::size_t bit = 0; bit < buf.size() * 8; bit += 97) {
    buf[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
    EXPECT_NE(crc32c(buf), clean) << "bit " << bit;
    buf[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
  }
}

#if defined(__x86_64__)
TEST(Crc32c, UsesTheInstructionOnThisCpu) {
  __builtin_cpu_init();
  EXPECT_EQ(crc32c_hardware(), __builtin_cpu_supports("sse4.2") != 0);
}
#endif

}  // namespace
}  // namespace shmbus::log
