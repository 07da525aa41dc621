// module.cpp — the `_shmbus` extension: the C++ API for shmbus/__init__.py.
#include <pthread.h>

#include <atomic>

#include "bindings.hpp"

namespace shmbus::python {

namespace {
std::atomic<std::uint64_t> generation{0};
void forked_child() {
  generation.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

std::uint64_t fork_generation() noexcept {
  return generation.load(std::memory_order_relaxed);
}

}  // namespace shmbus::python

PYBIND11_MODULE(_shmbus, m) {
  using namespace shmbus::python;
  m.doc() = "shmbus's C++ API for the shmbus package (use `import shmbus`).";
  ::pthread_atfork(nullptr, nullptr, forked_child);
  load_errors();
  bind_message(m);
  bind_producer(m);
  bind_consumer(m);
  bind_topic(m);
  bind_reader(m);
}
