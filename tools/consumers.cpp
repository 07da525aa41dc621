#include "consumers.hpp"

#include <signal.h>

#include <cerrno>
#include <cstring>

#include "util.hpp"

namespace shmbus::cli {

bool pid_alive(std::uint32_t pid) {
  return pid != 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

namespace {
std::uint64_t lag(const PartitionInfo& p, std::size_t k) {
  const std::uint64_t pos = p.consumer_positions[k];
  return p.tail > pos ? p.tail - pos : 0;
}
}  // namespace

std::string consumer_text(const PartitionInfo& p, std::size_t k, Policy policy) {
  const std::uint32_t pid = p.consumer_pids[k];
  const std::string& name = p.consumer_names[k];
  const bool block = policy == Policy::Block;
  std::string s;
  if (name.empty()) {
    s = "consumer pid " + std::to_string(pid);
    if (!pid_alive(pid))
      s += block ? " (exited: holds producers back until one reaps it)" : " (exited)";
  } else {
    s = "cursor '" + name + "' ";
    s += pid_alive(pid) ? "pid " + std::to_string(pid)
                        : std::string(block ? "parked (no holder; holds producers back until "
                                              "resumed or deleted)"
                                            : "parked (no holder)");
  }
  return s + " position " + std::to_string(p.consumer_positions[k]) + " lag " +
         std::to_string(lag(p, k)) + " B";
}

nlohmann::json consumer_json(const PartitionInfo& p, std::size_t k) {
  const std::string& name = p.consumer_names[k];
  return {{"pid", p.consumer_pids[k]},
          {"alive", pid_alive(p.consumer_pids[k])},
          {"name", name.empty() ? nlohmann::json(nullptr) : nlohmann::json(name)},
          {"position", p.consumer_positions[k]},
          {"lag", lag(p, k)}};
}

nlohmann::json spill_json(const PartitionInfo::Spill& w) {
  return {{"committed", w.committed},
          {"written", w.written},
          {"durable", w.durable},
          {"disk_start", w.disk_start},
          {"error", w.spill_errno == 0 ? "" : std::strerror(w.spill_errno)}};
}

// A durable partition's spiller: how far behind the tail, or why it stopped.
std::string spill_text(const PartitionInfo& p, Policy policy) {
  const PartitionInfo::Spill& w = p.spill;
  const std::string marks = "written " + std::to_string(w.written) + ", durable " +
                            std::to_string(w.durable) + ", on disk from " +
                            std::to_string(w.disk_start);
  if (w.spill_errno != 0)
    return "spill FAILED: " + std::string(std::strerror(w.spill_errno)) + " (" + marks + "); " +
           (policy == Policy::Block ? "producers are held back" : "nothing more is recorded") +
           " until shmbusd is restarted with the cause fixed";
  return "spill " + marks + ", " +
         human_bytes(double(p.tail > w.written ? p.tail - w.written : 0)) + " behind the tail";
}

}  // namespace shmbus::cli
