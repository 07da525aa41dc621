// shmbus/placement.hpp — pin the calling thread next to the memory it uses.
//
// A topic's partitions can be placed on a NUMA node (TopicOptions::placement).
// A producer or consumer thread that runs on the CPUs of that node reads and
// writes the ring without crossing the interconnect. These helpers pin the
// calling thread; they are set-up calls (each loads the host topology), not
// for the hot path. CPU and node numbers are the operating system's indexes,
// as in /sys/devices/system/{cpu,node} and `lscpu`.
#pragma once

#include "shmbus/status.hpp"

namespace shmbus {

// Pins the calling thread to one CPU. Fails if the CPU does not exist or is
// outside this process's allowed set (cgroup cpuset, taskset).
Outcome pin_thread_to_cpu(int cpu);

// Pins the calling thread to the CPUs of a NUMA node; the scheduler still
// moves it between them. Fails if the node does not exist or has no CPUs.
Outcome pin_thread_to_node(int node);

// The CPU the calling thread is running on right now (sched_getcpu), or -1 if
// it cannot be found out. Without pinning, it may change at any moment.
int current_cpu() noexcept;

}  // namespace shmbus
