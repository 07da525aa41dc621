// bench/harness/shared_memory.hpp — an anonymous MAP_SHARED, pre-faulted
// mapping made before fork(): the parent and its children see the same bytes.
//
// Concurrency: the object is not thread-safe; the bytes are what the caller
// makes of them.
#pragma once

#include <cstddef>

namespace shmbus::bench {

class SharedMemory {
 public:
  SharedMemory() = default;
  explicit SharedMemory(std::size_t bytes);  // fails (Failure) if mmap does
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory();
  std::byte* data() const noexcept { return base_; }

 private:
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace shmbus::bench
