// shmbus doctor: what on this machine matters for the bus's latency, each
// with a verdict (ok, warn, info) and what to change.
//
// Reads /proc and /sys, asks the kernel for a small io_uring, and asks hwloc
// for the NUMA layout. Nothing is changed; the advice says how to.
#include <linux/io_uring.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "commands.hpp"
#include "shm/clock.hpp"
#include "shm/placement.hpp"

namespace shmbus::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

enum class Verdict { Ok, Info, Warn };

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Ok:
      return "ok";
    case Verdict::Info:
      return "info";
    case Verdict::Warn:
      return "warn";
  }
  return "?";
}

struct Check {
  std::string name;
  Verdict verdict = Verdict::Info;
  std::string finding;
  std::string advice;  // empty: nothing to change
};

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  std::string v = s.str();
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

// "always [madvise] never" -> "madvise"
std::string bracketed(const std::string& s) {
  const auto a = s.find('['), b = s.find(']');
  return a != std::string::npos && b != std::string::npos && b > a ? s.substr(a + 1, b - a - 1) : s;
}

// The value of `key=` on the kernel command line, if present.
std::optional<std::string> cmdline_value(const std::string& cmdline, const std::string& key) {
  std::istringstream in(cmdline);
  std::string word;
  while (in >> word) {
    if (word == "--") break;  // the rest goes to init
    if (word.rfind(key + "=", 0) == 0) return word.substr(key.size() + 1);
  }
  return std::nullopt;
}

Check cpu_count() {
  Check c{"cpus", Verdict::Ok, "", ""};
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  cpu_set_t set;
  CPU_ZERO(&set);
  const int usable = ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : int(online);
  c.finding =
      std::to_string(online) + " online, " + std::to_string(usable) + " usable by this process";
  if (usable < 2) {
    c.verdict = Verdict::Warn;
    c.advice =
        "a producer and a consumer that spin need a CPU each; with one they take turns "
        "(milliseconds of latency): give the processes more CPUs, or use WaitStrategy::Futex";
  } else if (usable < 4) {
    c.verdict = Verdict::Info;
    c.advice =
        "spinning producers and consumers take whole CPUs: pin them "
        "(shmbus::pin_thread_to_cpu) to different CPUs and keep other work off them";
  }
  return c;
}

Check governor() {
  Check c{"cpu governor", Verdict::Ok, "", ""};
  std::map<std::string, int> seen;
  for (int cpu = 0; cpu < 4096; ++cpu) {
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu);
    if (!fs::exists(base)) break;
    if (auto g = read_file(base + "/cpufreq/scaling_governor")) ++seen[*g];
  }
  if (seen.empty()) {
    c.verdict = Verdict::Info;
    c.finding = "no cpufreq (usual in a VM or container): the host decides CPU frequency";
    c.advice =
        "on the host, use the performance governor and disable deep C-states for the "
        "VM's CPUs";
    return c;
  }
  for (const auto& [g, n] : seen) {
    if (!c.finding.empty()) c.finding += ", ";
    c.finding += g + " on " + std::to_string(n) + " CPU(s)";
  }
  if (seen.size() != 1 || seen.begin()->first != "performance") {
    c.verdict = Verdict::Warn;
    c.advice =
        "frequency scaling adds wake-up and ramp-up latency: cpupower frequency-set -g "
        "performance (or echo performance | tee "
        "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)";
  }
  return c;
}

Check isolation() {
  Check c{"isolated cpus", Verdict::Ok, "", ""};
  const std::string cmdline = read_file("/proc/cmdline").value_or("");
  const std::string isolated = read_file("/sys/devices/system/cpu/isolated").value_or("");
  const std::string nohz = read_file("/sys/devices/system/cpu/nohz_full").value_or("");
  const auto iso_arg = cmdline_value(cmdline, "isolcpus");
  const auto nohz_arg = cmdline_value(cmdline, "nohz_full");
  c.finding = "isolated: " + (isolated.empty() ? std::string("none") : isolated) +
              "; nohz_full: " + (nohz.empty() || nohz == "(null)" ? std::string("none") : nohz);
  if (iso_arg) c.finding += "; cmdline isolcpus=" + *iso_arg;
  if (nohz_arg) c.finding += "; cmdline nohz_full=" + *nohz_arg;
  if (isolated.empty()) {
    c.verdict = Verdict::Info;
    c.advice =
        "for the lowest jitter, keep the kernel and other tasks off the CPUs that "
        "spin: boot with isolcpus=2-3 nohz_full=2-3 rcu_nocbs=2-3 (your CPU list) and "
        "pin the bus threads there";
  } else if (nohz.empty() || nohz == "(null)") {
    c.verdict = Verdict::Info;
    c.advice =
        "add nohz_full= (and rcu_nocbs=) with the isolated CPUs to stop the scheduler "
        "tick on them";
  }
  return c;
}

std::map<std::string, long long> meminfo() {
  std::map<std::string, long long> m;
  std::ifstream in("/proc/meminfo");
  std::string key;
  long long v;
  while (in >> key >> v) {
    if (!key.empty() && key.back() == ':') key.pop_back();
    m[key] = v;
    in.ignore(64, '\n');
  }
  return m;
}

Check huge_pages() {
  Check c{"huge pages", Verdict::Info, "", ""};
  auto m = meminfo();
  c.finding = "HugePages_Total " + std::to_string(m["HugePages_Total"]) + ", HugePages_Free " +
              std::to_string(m["HugePages_Free"]) + ", Hugepagesize " +
              std::to_string(m["Hugepagesize"]) + " kB; ShmemHugePages " +
              std::to_string(m["ShmemHugePages"]) + " kB";
  c.advice =
      "shmbus rings are /dev/shm files, which take transparent huge pages (topic "
      "create --huge-pages), not the hugetlbfs pool; see 'transparent huge pages'";
  return c;
}

Check thp() {
  Check c{"transparent huge pages", Verdict::Ok, "", ""};
  const auto enabled = read_file("/sys/kernel/mm/transparent_hugepage/enabled");
  const auto shmem = read_file("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  if (!enabled && !shmem) {
    c.verdict = Verdict::Info;
    c.finding = "not available (kernel without THP)";
    c.advice = "rings use 4 KiB pages: prefer rings that fit in the TLB, or a THP kernel";
    return c;
  }
  const std::string e = enabled ? bracketed(*enabled) : "?";
  const std::string s = shmem ? bracketed(*shmem) : "?";
  c.finding = "enabled=" + e + ", shmem_enabled=" + s;
  if (s == "never" || s == "deny") {
    c.verdict = Verdict::Warn;
    c.advice = "topic create --huge-pages has no effect on /dev/shm while shmem_enabled is " + s +
               ": echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled";
  } else if (e == "always") {
    c.verdict = Verdict::Info;
    c.advice =
        "enabled=always lets khugepaged compact any process's memory (latency spikes): "
        "madvise is enough for the bus: echo madvise > "
        "/sys/kernel/mm/transparent_hugepage/enabled";
  }
  return c;
}

Check swap() {
  Check c{"swap", Verdict::Ok, "", ""};
  std::ifstream in("/proc/swaps");
  std::string line;
  std::getline(in, line);  // header
  int devices = 0;
  while (std::getline(in, line))
    if (!line.empty()) ++devices;
  const std::string swappiness = read_file("/proc/sys/vm/swappiness").value_or("?");
  c.finding = std::to_string(devices) + " swap device(s), vm.swappiness=" + swappiness;
  if (devices > 0) {
    c.verdict = Verdict::Warn;
    c.advice =
        "a swapped-out ring page costs milliseconds: create latency-critical topics "
        "with --lock, or sysctl vm.swappiness=1, or swapoff -a";
  }
  return c;
}

Check memlock() {
  Check c{"memlock limit", Verdict::Ok, "", ""};
  rlimit r{};
  ::getrlimit(RLIMIT_MEMLOCK, &r);
  c.finding = r.rlim_cur == RLIM_INFINITY ? "unlimited" : human_bytes(double(r.rlim_cur));
  if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < (64u << 20)) {
    c.verdict = Verdict::Info;
    c.advice =
        "topic create --lock needs RLIMIT_MEMLOCK above the ring size: ulimit -l "
        "unlimited (or LimitMEMLOCK= in a systemd unit, memlock in limits.conf)";
  }
  return c;
}

Check shm_space(const Context& ctx) {
  Check c{"/dev/shm", Verdict::Ok, "", ""};
  const char* root = std::getenv("SHMBUS_SHM_ROOT");
  std::string path = root != nullptr && *root != '\0' ? root : "/dev/shm";
  while (!path.empty() && !fs::exists(path)) path = fs::path(path).parent_path().string();
  struct statvfs v {};
  if (path.empty() || ::statvfs(path.c_str(), &v) != 0) {
    c.verdict = Verdict::Warn;
    c.finding = "cannot statvfs " + path + ": " + std::strerror(errno);
    c.advice = "mount a tmpfs at /dev/shm (mount -t tmpfs -o size=2g tmpfs /dev/shm)";
    return c;
  }
  const double size = double(v.f_blocks) * double(v.f_frsize);
  const double avail = double(v.f_bavail) * double(v.f_frsize);
  c.finding = path + ": " + human_bytes(size) + " size, " + human_bytes(avail) + " free (bus '" +
              ctx.bus + "' lives in " + bus_dir(ctx) + ")";
  if (avail < double(256u << 20)) {
    c.verdict = Verdict::Warn;
    c.advice =
        "topics reserve their whole ring at creation: free space, or grow it with "
        "mount -o remount,size=2g /dev/shm";
  }
  return c;
}

Check io_uring() {
  Check c{"io_uring", Verdict::Ok, "", ""};
  const auto disabled = read_file("/proc/sys/kernel/io_uring_disabled");
  io_uring_params p{};
  const long fd = ::syscall(__NR_io_uring_setup, 4, &p);
  const int err = errno;
  if (fd >= 0) {
    ::close(static_cast<int>(fd));
    c.finding = "available (a 4-entry ring was set up)";
  } else {
    c.verdict = Verdict::Warn;
    c.finding = std::string("io_uring_setup failed: ") + std::strerror(err);
    if (err == ENOSYS)
      c.advice =
          "the kernel has no io_uring (needs 5.1+, CONFIG_IO_URING): durable topics "
          "will need a newer kernel";
    else
      c.advice =
          "io_uring is blocked (kernel.io_uring_disabled, or a seccomp profile such as "
          "a container runtime's): allow it for the daemon (sysctl "
          "kernel.io_uring_disabled=0) when topics are durable";
  }
  if (disabled) c.finding += "; kernel.io_uring_disabled=" + *disabled;
  c.finding += " (used by the daemon to spill durable topics to disk)";
  return c;
}

Check numa() {
  Check c{"numa", Verdict::Ok, "", ""};
  auto topo = shm::Topology::host();
  if (!topo) {
    c.verdict = Verdict::Warn;
    c.finding = topo.error().message;
    c.advice = "topic create --numa-node will fail until hwloc can read the topology";
    return c;
  }
  const int nodes = topo->numa_nodes();
  int found = 0;
  for (int node = 0; node < 4096 && found < nodes; ++node) {
    auto cpus = topo->cpus_of_node(node);
    if (!cpus) continue;
    ++found;
    c.finding +=
        (c.finding.empty() ? "" : "; ") + std::string("node ") + std::to_string(node) + ": CPUs";
    if (cpus->empty()) c.finding += " (none: memory only)";
    for (std::size_t i = 0; i < cpus->size(); ++i) {
      // Collapse runs: 0-3,8
      std::size_t j = i;
      while (j + 1 < cpus->size() && (*cpus)[j + 1] == (*cpus)[j] + 1) ++j;
      c.finding += (i == 0 ? " " : ",") + std::to_string((*cpus)[i]) +
                   (j > i ? "-" + std::to_string((*cpus)[j]) : "");
      i = j;
    }
  }
  c.finding = std::to_string(nodes) + " node(s): " + c.finding;
  if (nodes > 1) {
    c.verdict = Verdict::Info;
    c.advice =
        "put each topic on the node of its producer and consumers (topic create "
        "--numa-node N) and pin their threads there (shmbus::pin_thread_to_node): a "
        "cross-node cache-line transfer costs about twice a local one";
  }
  return c;
}

Check clock() {
  Check c{"clocksource", Verdict::Ok, "", ""};
  const std::string base = "/sys/devices/system/clocksource/clocksource0/";
  const std::string current = read_file(base + "current_clocksource").value_or("unknown");
  const std::string available = read_file(base + "available_clocksource").value_or("?");
  // What a frame's timestamp costs: clock_gettime(CLOCK_REALTIME), per call.
  constexpr int kCalls = 20000;
  timespec ts{};
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) ::clock_gettime(CLOCK_REALTIME, &ts);
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
      kCalls;
  char cost[32];
  std::snprintf(cost, sizeof cost, "%.0f", ns);
  if (shm::counter_clock()) {
    // Frames are stamped from the counter; clock_gettime runs once per anchor (10 ms).
    c.finding =
        current + " (available: " + available + "); frames are stamped from the " +
        "invariant time stamp counter, calibrated against CLOCK_REALTIME (clock_gettime: " + cost +
        " ns, once per 10 ms anchor)";
    return c;
  }
  c.finding = current + " (available: " + available +
              "); no invariant time stamp counter here, so each published frame pays a " +
              "clock_gettime: " + cost + " ns";
  if (current == "tsc") return c;
  if (current == "kvm-clock" || current == "arch_sys_counter" ||
      current == "hyperv_clocksource_tsc_page") {
    c.verdict = Verdict::Info;
    c.advice =
        "a paravirtual or architectural clock with a vDSO fast path: fine; tsc is a "
        "little cheaper where the host exposes a stable one";
  } else {
    c.verdict = Verdict::Warn;
    c.advice = current +
               " has no vDSO fast path, so every timestamp is a system call: use tsc "
               "(clocksource=tsc tsc=reliable on the kernel command line) or publish with "
               "ProducerOptions::timestamps = false";
  }
  return c;
}

}  // namespace

void run_doctor(const Context& ctx, const DoctorOptions& o) {
  const std::vector<Check> checks = {cpu_count(), governor(), isolation(), huge_pages(),
                                     thp(),       swap(),     memlock(),   shm_space(ctx),
                                     io_uring(),  numa(),     clock()};
  if (o.json) {
    json all = json::array();
    for (const Check& c : checks)
      all.push_back({{"check", c.name},
                     {"verdict", verdict_name(c.verdict)},
                     {"finding", c.finding},
                     {"advice", c.advice.empty() ? json(nullptr) : json(c.advice)}});
    int warnings = 0;
    for (const Check& c : checks) warnings += c.verdict == Verdict::Warn;
    (void)write_stdout(json{{"checks", all}, {"warnings", warnings}}.dump() + "\n");
    return;
  }
  std::string s;
  int warnings = 0;
  for (const Check& c : checks) {
    warnings += c.verdict == Verdict::Warn;
    char head[64];
    std::snprintf(head, sizeof head, "%-5s %-24s ", verdict_name(c.verdict), c.name.c_str());
    s += head + c.finding + "\n";
    if (!c.advice.empty()) s += std::string(31, ' ') + "-> " + c.advice + "\n";
  }
  s += std::to_string(warnings) + " warning(s)\n";
  (void)write_stdout(s);
}

}  // namespace shmbus::cli
