// lib/shm/placement.hpp — NUMA placement of partition memory, with hwloc.
//
// Topology answers "which node is CPU c on" and "which CPUs does node n have",
// decides where a Placement puts memory (choose_node), and binds a mapped
// range there (bind_memory). Nodes and CPUs are the operating system's
// indexes, as in /sys/devices/system/{node,cpu}. A synthetic topology (an
// hwloc description string) lets tests exercise multi-node decisions on a
// one-node machine.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/options.hpp"
#include "shmbus/status.hpp"

struct hwloc_topology;  // hwloc.h: typedef struct hwloc_topology* hwloc_topology_t

namespace shmbus::shm {

// Move-only owner of a loaded hwloc topology. Read-only after construction,
// so one instance may be queried from several threads.
class Topology {
 public:
  // The machine this process runs on, restricted to the CPUs and nodes the
  // process may use (cgroup cpuset, taskset).
  static Result<Topology> host();
  // An hwloc synthetic topology, e.g. "numa:2 core:2 pu:1" (2 nodes of 2 CPUs).
  // It describes no real hardware: bind_memory refuses it.
  static Result<Topology> synthetic(std::string_view description);

  Topology(Topology&& other) noexcept;
  Topology& operator=(Topology&& other) noexcept;
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;
  ~Topology();

  // Number of NUMA nodes; at least 1 (hwloc invents one on non-NUMA machines).
  int numa_nodes() const;

  // The NUMA node (OS index) whose CPUs include `os_cpu`.
  Result<int> node_of_cpu(int os_cpu) const;

  // OS CPU indexes of NUMA node `node`, ascending; empty for a memory-only node.
  Result<std::vector<int>> cpus_of_node(int node) const;

  // Where memory with placement `p` goes, for a caller running on `caller_cpu`:
  // Anywhere -> -1 (leave it to the kernel), Node -> p.node if it exists,
  // CallerNode -> node_of_cpu(caller_cpu). Depends only on the topology.
  Result<int> choose_node(const Placement& p, int caller_cpu) const;

  // Binds the pages of [addr, addr + len) to `node`; hwloc rounds the range out
  // to whole pages. Not strict: where the kernel has MPOL_PREFERRED_MANY (Linux
  // 5.15+), hwloc 2.9 uses it, so pages go to `node` while it has free memory
  // and elsewhere after; older kernels get MPOL_BIND. Bind before touching the
  // pages: pages already faulted in stay where they are. node == -1: does
  // nothing. Only for a host() topology.
  Outcome bind_memory(void* addr, std::size_t len, int node) const;

  // Pin the calling thread to one CPU, or to the CPUs of a node. Only for a
  // host() topology; shmbus::pin_thread_to_cpu/node wrap these.
  Outcome pin_current_thread_to_cpu(int os_cpu) const;
  Outcome pin_current_thread_to_node(int node) const;

 private:
  Topology(hwloc_topology* topology, bool is_host) noexcept
      : topology_(topology), is_host_(is_host) {}

  // "this machine" or "this synthetic topology", for error messages.
  const char* what_it_is() const noexcept;
  // e.g. "2 nodes (0, 1)", for error messages.
  std::string describe_nodes() const;

  hwloc_topology* topology_ = nullptr;
  bool is_host_ = false;
};

}  // namespace shmbus::shm
