// tests/unit/test_bus.hpp — a private bus directory per test, removed afterwards.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "shmbus/shmbus.hpp"

namespace shmbus::testing {

// Points SHMBUS_SHM_ROOT at a fresh directory under /dev/shm for one test.
class TestBus : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = "/dev/shm/shmbus-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(root_);
    ::setenv("SHMBUS_SHM_ROOT", root_.c_str(), 1);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::string dir() const { return root_ + "/" + bus; }
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
