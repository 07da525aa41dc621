// lib/shm/placement.cpp — NUMA placement and thread pinning with hwloc.
#include "shm/placement.hpp"

#include <hwloc.h>
#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "shmbus/placement.hpp"

namespace shmbus::shm {
namespace {

Error make_error(int code, std::string message) {
  return Error{code, std::move(message)};
}

std::string errno_text(int code) {
  return std::strerror(code);
}

// "0-3,8" for a bitmap; "(none)" when empty.
std::string list_of(hwloc_const_bitmap_t set) {
  if (hwloc_bitmap_iszero(set)) return "(none)";
  char* text = nullptr;
  if (hwloc_bitmap_list_asprintf(&text, set) < 0 || text == nullptr) return "(unknown)";
  std::string result(text);
  std::free(text);
  return result;
}

// The NUMA node object with OS index `node`, or nullptr.
hwloc_obj_t find_node(hwloc_topology_t topology, int node) {
  if (node < 0) return nullptr;
  return hwloc_get_numanode_obj_by_os_index(topology, static_cast<unsigned>(node));
}

// Owns an hwloc bitmap for the length of a scope.
class Bitmap {
 public:
  Bitmap() : bitmap_(hwloc_bitmap_alloc()) {}
  Bitmap(const Bitmap&) = delete;
  Bitmap& operator=(const Bitmap&) = delete;
  ~Bitmap() { hwloc_bitmap_free(bitmap_); }
  hwloc_bitmap_t get() const { return bitmap_; }

 private:
  hwloc_bitmap_t bitmap_;
};

// Binds the calling thread to `cpus`; `what` names the target for the error.
Outcome bind_thread(hwloc_topology_t topology, hwloc_const_cpuset_t cpus, const std::string& what) {
  if (hwloc_set_cpubind(topology, cpus, HWLOC_CPUBIND_THREAD) != 0) {
    const int code = errno;
    return make_error(code, "cannot pin this thread to " + what + ": " + errno_text(code));
  }
  return Done{};
}

}  // namespace

Result<Topology> Topology::host() {
  hwloc_topology_t topology = nullptr;
  if (hwloc_topology_init(&topology) != 0) {
    const int code = errno;
    return make_error(code, "cannot initialise hwloc: " + errno_text(code));
  }
  if (hwloc_topology_load(topology) != 0) {
    const int code = errno;
    hwloc_topology_destroy(topology);
    return make_error(code, "hwloc cannot read this machine's topology: " + errno_text(code) +
                                " (is /sys mounted?)");
  }
  return Topology(topology, /*is_host=*/true);
}

Result<Topology> Topology::synthetic(std::string_view description) {
  const std::string text(description);
  hwloc_topology_t topology = nullptr;
  if (hwloc_topology_init(&topology) != 0) {
    const int code = errno;
    return make_error(code, "cannot initialise hwloc: " + errno_text(code));
  }
  if (hwloc_topology_set_synthetic(topology, text.c_str()) != 0) {
    const int code = errno;
    hwloc_topology_destroy(topology);
    return make_error(code, "invalid hwloc synthetic topology \"" + text +
                                "\": write levels as type:count, e.g. \"numa:2 core:2 pu:1\"");
  }
  if (hwloc_topology_load(topology) != 0) {
    const int code = errno;
    hwloc_topology_destroy(topology);
    return make_error(
        code, "hwloc cannot build synthetic topology \"" + text + "\": " + errno_text(code));
  }
  return Topology(topology, /*is_host=*/false);
}

Topology::Topology(Topology&& other) noexcept
    : topology_(std::exchange(other.topology_, nullptr)), is_host_(other.is_host_) {}

Topology& Topology::operator=(Topology&& other) noexcept {
  if (this != &other) {
    if (topology_ != nullptr) hwloc_topology_destroy(topology_);
    topology_ = std::exchange(other.topology_, nullptr);
    is_host_ = other.is_host_;
  }
  return *this;
}

Topology::~Topology() {
  if (topology_ != nullptr) hwloc_topology_destroy(topology_);
}

int Topology::numa_nodes() const {
  const int count = hwloc_get_nbobjs_by_type(topology_, HWLOC_OBJ_NUMANODE);
  return count > 0 ? count : 1;
}

const char* Topology::what_it_is() const noexcept {
  return is_host_ ? "this machine" : "this synthetic topology";
}

std::string Topology::describe_nodes() const {
  const int count = hwloc_get_nbobjs_by_type(topology_, HWLOC_OBJ_NUMANODE);
  std::string text = std::to_string(count) + (count == 1 ? " node (" : " nodes (");
  for (int i = 0; i < count; ++i) {
    const hwloc_obj_t node =
        hwloc_get_obj_by_type(topology_, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    if (i > 0) text += ", ";
    text += std::to_string(node->os_index);
  }
  return text + ")";
}

Result<int> Topology::node_of_cpu(int os_cpu) const {
  const hwloc_const_cpuset_t all_cpus = hwloc_topology_get_topology_cpuset(topology_);
  if (os_cpu < 0 || hwloc_bitmap_isset(all_cpus, static_cast<unsigned>(os_cpu)) == 0) {
    return make_error(EINVAL, "CPU " + std::to_string(os_cpu) + " does not exist: " + what_it_is() +
                                  " has CPUs " + list_of(all_cpus) +
                                  " (offline CPUs and CPUs outside this process's cpuset "
                                  "are not counted)");
  }
  // Where a CPU is local to several nodes (e.g. DRAM and high-bandwidth
  // memory), the first in hwloc's logical order is the ordinary DRAM node.
  const int count = hwloc_get_nbobjs_by_type(topology_, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < count; ++i) {
    const hwloc_obj_t node =
        hwloc_get_obj_by_type(topology_, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    if (hwloc_bitmap_isset(node->cpuset, static_cast<unsigned>(os_cpu)) != 0) {
      return static_cast<int>(node->os_index);
    }
  }
  return make_error(ENOENT, "CPU " + std::to_string(os_cpu) + " belongs to no NUMA node of " +
                                what_it_is() + " (" + describe_nodes() +
                                "); use Placement::Kind::Anywhere");
}

Result<std::vector<int>> Topology::cpus_of_node(int node) const {
  const hwloc_obj_t node_object = find_node(topology_, node);
  if (node_object == nullptr) {
    return make_error(EINVAL, "NUMA node " + std::to_string(node) +
                                  " does not exist: " + what_it_is() + " has " + describe_nodes());
  }
  std::vector<int> cpus;
  for (int cpu = hwloc_bitmap_first(node_object->cpuset); cpu >= 0;
       cpu = hwloc_bitmap_next(node_object->cpuset, cpu)) {
    cpus.push_back(cpu);
  }
  return cpus;
}

Result<int> Topology::choose_node(const Placement& p, int caller_cpu) const {
  switch (p.kind) {
    case Placement::Kind::Anywhere:
      return -1;
    case Placement::Kind::Node:
      if (find_node(topology_, p.node) == nullptr) {
        return make_error(EINVAL, "NUMA node " + std::to_string(p.node) + " does not exist: " +
                                      what_it_is() + " has " + describe_nodes() +
                                      "; set Placement::node to one of them, or use "
                                      "Placement::Kind::Anywhere");
      }
      return p.node;
    case Placement::Kind::CallerNode: {
      Result<int> node = node_of_cpu(caller_cpu);
      if (!node) {
        return make_error(node.error().code,
                          "cannot place memory on the caller's NUMA node: " + node.error().message);
      }
      return node;
    }
  }
  return make_error(EINVAL, "unknown Placement::Kind " + std::to_string(static_cast<int>(p.kind)) +
                                ": use Anywhere, Node or CallerNode");
}

Outcome Topology::bind_memory(void* addr, std::size_t len, int node) const {
  if (node == -1) return Done{};
  const std::string target = std::to_string(len) + " bytes to NUMA node " + std::to_string(node);
  // hwloc binds nothing on a topology that is not this machine, yet reports
  // success; refuse instead of pretending.
  if (!is_host_) {
    return make_error(EINVAL, "cannot bind " + target +
                                  ": the topology is synthetic, not this machine; use "
                                  "Topology::host()");
  }
  const hwloc_obj_t node_object = find_node(topology_, node);
  if (node_object == nullptr) {
    return make_error(EINVAL, "cannot bind " + target + ": NUMA node " + std::to_string(node) +
                                  " does not exist: " + what_it_is() + " has " + describe_nodes());
  }
  const hwloc_topology_support* support = hwloc_topology_get_support(topology_);
  if (support->membind->set_area_membind == 0) {
    return make_error(ENOSYS, "cannot bind " + target +
                                  ": hwloc does not support binding memory on this system; "
                                  "use Placement::Kind::Anywhere");
  }
  if (hwloc_set_area_membind(topology_, addr, len, node_object->nodeset, HWLOC_MEMBIND_BIND,
                             HWLOC_MEMBIND_BYNODESET) != 0) {
    const int code = errno;
    std::string hint;
    if (code == EPERM) {
      hint =
          " (in a container, mbind may need CAP_SYS_NICE, e.g. docker run --cap-add "
          "SYS_NICE; or use Placement::Kind::Anywhere)";
    }
    if (code == ENOSYS) hint = " (the kernel lacks NUMA support; use Placement::Kind::Anywhere)";
    return make_error(code, "cannot bind " + target + ": " + errno_text(code) + hint);
  }
  return Done{};
}

Outcome Topology::pin_current_thread_to_cpu(int os_cpu) const {
  const std::string target = "CPU " + std::to_string(os_cpu);
  if (!is_host_) {
    return make_error(EINVAL, "cannot pin this thread to " + target +
                                  ": the topology is synthetic, not this machine; use "
                                  "Topology::host()");
  }
  const hwloc_const_cpuset_t all_cpus = hwloc_topology_get_topology_cpuset(topology_);
  if (os_cpu < 0 || hwloc_bitmap_isset(all_cpus, static_cast<unsigned>(os_cpu)) == 0) {
    return make_error(EINVAL, "cannot pin this thread to " + target + ": it does not exist: " +
                                  what_it_is() + " has CPUs " + list_of(all_cpus) +
                                  " (offline CPUs and CPUs outside this process's cpuset "
                                  "are not counted)");
  }
  Bitmap cpus;
  hwloc_bitmap_only(cpus.get(), static_cast<unsigned>(os_cpu));
  return bind_thread(topology_, cpus.get(), target);
}

Outcome Topology::pin_current_thread_to_node(int node) const {
  const std::string target = "the CPUs of NUMA node " + std::to_string(node);
  if (!is_host_) {
    return make_error(EINVAL, "cannot pin this thread to " + target +
                                  ": the topology is synthetic, not this machine; use "
                                  "Topology::host()");
  }
  const hwloc_obj_t node_object = find_node(topology_, node);
  if (node_object == nullptr) {
    return make_error(EINVAL, "cannot pin this thread to " + target + ": NUMA node " +
                                  std::to_string(node) + " does not exist: " + what_it_is() +
                                  " has " + describe_nodes());
  }
  if (hwloc_bitmap_iszero(node_object->cpuset)) {
    return make_error(EINVAL, "cannot pin this thread to " + target +
                                  ": the node has memory but no CPUs; pin to the node of "
                                  "the CPUs next to it");
  }
  return bind_thread(topology_, node_object->cpuset, target);
}

}  // namespace shmbus::shm

namespace shmbus {

Outcome pin_thread_to_cpu(int cpu) {
  Result<shm::Topology> topology = shm::Topology::host();
  if (!topology) return topology.error();
  return topology->pin_current_thread_to_cpu(cpu);
}

Outcome pin_thread_to_node(int node) {
  Result<shm::Topology> topology = shm::Topology::host();
  if (!topology) return topology.error();
  return topology->pin_current_thread_to_node(node);
}

int current_cpu() noexcept {
  return sched_getcpu();
}

}  // namespace shmbus
