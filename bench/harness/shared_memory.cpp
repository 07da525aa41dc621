#include "shared_memory.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "failure.hpp"

namespace shmbus::bench {

SharedMemory::SharedMemory(std::size_t bytes) : size_(bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) fail(format("mmap of %zu shared bytes: %s", bytes, std::strerror(errno)));
  base_ = static_cast<std::byte*>(p);
}

SharedMemory::~SharedMemory() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

}  // namespace shmbus::bench
