// tests/unit/test_bus.hpp — a private bus directory per test, removed
// afterwards, and a white-box view of a partition in it.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "log/ring.hpp"
#include "shmbus/shmbus.hpp"

namespace shmbus::testing {

// Points SHMBUS_SHM_ROOT at a fresh directory under /dev/shm for one test.
class TestBus : public ::testing::Test {
 protected:
  void SetUp() override {
    // A parametrized test's name has a '/' ("Test/Param"): one directory.
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '.');
    root_ = "/dev/shm/shmbus-test-" + std::to_string(::getpid()) + "-" + name;
    std::filesystem::remove_all(root_);
    ::setenv("SHMBUS_SHM_ROOT", root_.c_str(), 1);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::string dir() const { return root_ + "/" + bus; }
  // Partition 0 of `topic`, mapped as a producer maps it (the log writable),
  // for tests that set shared words by hand; a failure is reported and nullopt.
  std::optional<log::Ring> open_ring(std::string_view topic = "t") const {
    auto r = log::Ring::open(dir(), topic, 0, /*writable_log=*/true, false);
    if (!r) {
      ADD_FAILURE() << r.error().message;
      return std::nullopt;
    }
    return std::move(r).value();
  }
  const char* bus = "test";
  std::string root_;
};

inline std::span<const std::byte> bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}
inline std::string_view text(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace shmbus::testing
