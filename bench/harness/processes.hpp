// bench/harness/processes.hpp — the benchmark's processes: run_processes()
// forks one child per Role, pins it to its CPU, lets it set up, releases all
// of them at once ("go") and waits for every child to exit, within a time
// limit. A child's failure (a Failure or other exception it throws, a
// signal, a non-zero exit) becomes a Failure in the parent naming the process
// and its CPU; on any failure, or SIGINT/SIGTERM/SIGHUP, every child is
// killed first.
//
// Call setup_signals() once, before the first run_processes(): the parent
// then keeps SIGCHLD and the termination signals blocked and collects them
// while it waits, so that it sleeps without disturbing the pinned CPUs.
//
// Concurrency: the parent's calls are single-threaded.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace shmbus::bench {

inline constexpr int kMaxProcs = 3;

// Written by the children (in a SharedMemory), read by the parent.
struct ProcessErrors {
  std::uint32_t failed[kMaxProcs];
  char error[kMaxProcs][512];
};

struct Role {
  const char* name;
  int cpu;
  std::function<void(const std::function<void()>& ready)> body;  // calls ready() once set up
};

void setup_signals();
// Fails if SIGINT, SIGTERM or SIGHUP is pending.
void check_interrupted();
// Up to kMaxProcs roles; `errors` must live in shared memory.
void run_processes(int timeout_s, ProcessErrors* errors, const std::vector<Role>& roles);
// Checks that every CPU can be pinned, before any test runs.
void preflight(int timeout_s, ProcessErrors* errors, const std::vector<int>& cpus);

}  // namespace shmbus::bench
