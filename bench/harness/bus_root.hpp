// bench/harness/bus_root.hpp — a private shmbus root for a benchmark run:
// /dev/shm/<prefix>.<pid>.<random>, exported as SHMBUS_SHM_ROOT so that the
// topics the run creates live there, and removed at the end (remove_root(),
// also on the error paths). A run killed with SIGKILL cannot remove its own;
// make_root() first removes those of <prefix> whose pid is gone.
//
// Concurrency: single-threaded, in the parent, before forking.
#pragma once

#include <string>

namespace shmbus::bench {

// Returns the new root. Fails if it cannot be created.
std::string make_root(const std::string& prefix);
// The current root ("" when none).
const std::string& root();
// Removes the root made by make_root (no-op when none); reports on stderr.
void remove_root() noexcept;

}  // namespace shmbus::bench
