// NUMA placement: decisions on a synthetic two-node topology, pinning and
// memory binding on this machine.
#include "shm/placement.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "shmbus/placement.hpp"

namespace shmbus::shm {
namespace {

// gtest only (no gmock): passes when `text` contains `part`, else prints both.
::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// Two NUMA nodes of two single-thread cores: node 0 has CPUs 0-1, node 1 has CPUs 2-3.
constexpr const char* kTwoNodes = "numa:2 core:2 pu:1";

Topology two_nodes() {
  Result<Topology> topology = Topology::synthetic(kTwoNodes);
  if (!topology) ADD_FAILURE() << topology.error().message;
  return std::move(topology).value();
}

Placement on_node(int node) {
  return Placement{Placement::Kind::Node, node};
}

TEST(Topology, SyntheticHasTwoNodes) {
  EXPECT_EQ(two_nodes().numa_nodes(), 2);
}

TEST(Topology, BadSyntheticDescriptionIsAnError) {
  Result<Topology> topology = Topology::synthetic("bogus:7");
  ASSERT_FALSE(topology);
  EXPECT_TRUE(Contains(topology.error().message, "bogus:7"));
}

TEST(Topology, NodeOfCpuOnEachNode) {
  const Topology topology = two_nodes();
  const int expected_node[] = {0, 0, 1, 1};
  for (int cpu = 0; cpu < 4; ++cpu) {
    Result<int> node = topology.node_of_cpu(cpu);
    ASSERT_TRUE(node) << node.error().message;
    EXPECT_EQ(*node, expected_node[cpu]) << "CPU " << cpu;
  }
}

TEST(Topology, NodeOfMissingCpuNamesIt) {
  const Topology topology = two_nodes();
  for (int cpu : {4, 99, -1}) {
    Result<int> node = topology.node_of_cpu(cpu);
    ASSERT_FALSE(node) << "CPU " << cpu;
    EXPECT_TRUE(Contains(node.error().message, "CPU " + std::to_string(cpu) + " does not exist"));
    EXPECT_TRUE(Contains(node.error().message, "0-3"));  // the CPUs that do exist
  }
}

TEST(Topology, CpusOfNode) {
  const Topology topology = two_nodes();
  Result<std::vector<int>> node0 = topology.cpus_of_node(0);
  Result<std::vector<int>> node1 = topology.cpus_of_node(1);
  ASSERT_TRUE(node0) << node0.error().message;
  ASSERT_TRUE(node1) << node1.error().message;
  EXPECT_EQ(*node0, (std::vector<int>{0, 1}));
  EXPECT_EQ(*node1, (std::vector<int>{2, 3}));
}

TEST(Topology, CpusOfMissingNodeNamesIt) {
  Result<std::vector<int>> cpus = two_nodes().cpus_of_node(2);
  ASSERT_FALSE(cpus);
  EXPECT_TRUE(Contains(cpus.error().message, "NUMA node 2 does not exist"));
  EXPECT_TRUE(Contains(cpus.error().message, "2 nodes (0, 1)"));
}

TEST(ChooseNode, AnywhereIsMinusOne) {
  Result<int> node = two_nodes().choose_node(Placement{}, 3);
  ASSERT_TRUE(node) << node.error().message;
  EXPECT_EQ(*node, -1);
}

TEST(ChooseNode, NodeIsThatNode) {
  const Topology topology = two_nodes();
  for (int wanted : {0, 1}) {
    Result<int> node = topology.choose_node(on_node(wanted), 0);  // caller CPU is irrelevant
    ASSERT_TRUE(node) << node.error().message;
    EXPECT_EQ(*node, wanted);
  }
}

TEST(ChooseNode, MissingNodeNamesItAndTheNodesThatExist) {
  const Topology topology = two_nodes();
  for (int wanted : {2, 3, -1}) {
    Result<int> node = topology.choose_node(on_node(wanted), 0);
    ASSERT_FALSE(node) << "node " << wanted;
    EXPECT_TRUE(
        Contains(node.error().message, "NUMA node " + std::to_string(wanted) + " does not exist"));
    EXPECT_TRUE(Contains(node.error().message, "2 nodes (0, 1)"));
  }
}

TEST(ChooseNode, CallerNodeFollowsTheCallersCpu) {
  const Topology topology = two_nodes();
  const Placement caller_node{Placement::Kind::CallerNode, -1};
  const int expected_node[] = {0, 0, 1, 1};
  for (int cpu = 0; cpu < 4; ++cpu) {
    Result<int> node = topology.choose_node(caller_node, cpu);
    ASSERT_TRUE(node) << node.error().message;
    EXPECT_EQ(*node, expected_node[cpu]) << "CPU " << cpu;
  }
}

TEST(ChooseNode, CallerNodeOnMissingCpuNamesIt) {
  Result<int> node = two_nodes().choose_node(Placement{Placement::Kind::CallerNode, -1}, 7);
  ASSERT_FALSE(node);
  EXPECT_TRUE(Contains(node.error().message, "CPU 7 does not exist"));
}

TEST(Topology, SyntheticRefusesToBindMemory) {
  alignas(4096) static char page[4096];
  Outcome bound = two_nodes().bind_memory(page, sizeof page, 0);
  ASSERT_FALSE(bound);
  EXPECT_TRUE(Contains(bound.error().message, "synthetic"));
}

TEST(Host, HasAtLeastOneNode) {
  Result<Topology> host = Topology::host();
  ASSERT_TRUE(host) << host.error().message;
  EXPECT_GE(host->numa_nodes(), 1);
  // Every node of the host answers cpus_of_node; CPU 0's node is one of them.
  Result<int> node_of_cpu0 = host->node_of_cpu(0);
  ASSERT_TRUE(node_of_cpu0) << node_of_cpu0.error().message;
  Result<std::vector<int>> cpus = host->cpus_of_node(*node_of_cpu0);
  ASSERT_TRUE(cpus) << cpus.error().message;
  EXPECT_FALSE(cpus->empty());
}

TEST(Host, PinThreadToCpuZero) {
  bool pinned = false;
  std::string error;
  int cpu_after_pin = -2;
  std::thread pinned_thread([&] {
    Outcome outcome = pin_thread_to_cpu(0);
    pinned = static_cast<bool>(outcome);
    if (!pinned) error = outcome.error().message;
    cpu_after_pin = current_cpu();
  });
  pinned_thread.join();
  ASSERT_TRUE(pinned) << error;
  EXPECT_EQ(cpu_after_pin, 0);
}

TEST(Host, PinThreadToNodeOfCpuZero) {
  Result<Topology> host = Topology::host();
  ASSERT_TRUE(host) << host.error().message;
  Result<int> node = host->node_of_cpu(0);
  ASSERT_TRUE(node) << node.error().message;
  Result<std::vector<int>> node_cpus = host->cpus_of_node(*node);
  ASSERT_TRUE(node_cpus) << node_cpus.error().message;

  bool pinned = false;
  std::string error;
  int cpu_after_pin = -2;
  std::thread pinned_thread([&] {
    Outcome outcome = pin_thread_to_node(*node);
    pinned = static_cast<bool>(outcome);
    if (!pinned) error = outcome.error().message;
    cpu_after_pin = current_cpu();
  });
  pinned_thread.join();
  ASSERT_TRUE(pinned) << error;
  EXPECT_NE(std::find(node_cpus->begin(), node_cpus->end(), cpu_after_pin), node_cpus->end())
      << "running on CPU " << cpu_after_pin;
}

TEST(Host, PinToMissingCpuOrNodeNamesIt) {
  Outcome cpu = pin_thread_to_cpu(100000);
  ASSERT_FALSE(cpu);
  EXPECT_TRUE(Contains(cpu.error().message, "CPU 100000"));
  Outcome node = pin_thread_to_node(4096);
  ASSERT_FALSE(node);
  EXPECT_TRUE(Contains(node.error().message, "NUMA node 4096 does not exist"));
}

TEST(Host, BindAnonymousMappingToNodeZero) {
  Result<Topology> host = Topology::host();
  ASSERT_TRUE(host) << host.error().message;
  const std::size_t length = 16 * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  void* region = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(region, MAP_FAILED);

  Outcome bound = host->bind_memory(region, length, 0);
  // ENOSYS: no NUMA support in hwloc or the kernel. EPERM: a seccomp profile
  // forbids mbind (Docker's default does without CAP_SYS_NICE).
  if (!bound && (bound.error().code == ENOSYS || bound.error().code == EPERM)) {
    munmap(region, length);
    GTEST_SKIP() << "memory binding unavailable here: " << bound.error().message;
  }
  EXPECT_TRUE(bound) << bound.error().message;
  static_cast<char*>(region)[0] = 1;  // the first touch allocates on node 0
  EXPECT_TRUE(host->bind_memory(region, length, -1)) << "node -1 must be a no-op";
  munmap(region, length);
}

TEST(Host, BindToMissingNodeNamesIt) {
  Result<Topology> host = Topology::host();
  ASSERT_TRUE(host) << host.error().message;
  alignas(4096) static char page[4096];
  Outcome bound = host->bind_memory(page, sizeof page, 4096);
  ASSERT_FALSE(bound);
  EXPECT_TRUE(Contains(bound.error().message, "NUMA node 4096 does not exist"));
}

}  // namespace
}  // namespace shmbus::shm
