// shmbus-spill: the spiller's throughput against fio's sequential write on
// the same directory, and replay from the files against fio's sequential
// read, as ratios measured in one run (README, "Performance").
//
//   shmbus-spill --shmbusd build/daemon/shmbusd [--dir DIR] [--mib N] [--size BYTES]
//                [--shmbus build/tools/shmbus --paced N --rate R]
//
// It starts its own shmbusd (a private bus, data directory under DIR),
// creates a durable `block` topic (fsync = interval, 100 ms), publishes N
// MiB of --size payloads as fast as the spiller takes them, and times
// first publish -> wait_durable(all) Ok. Then a consumer reads it all back
// from the start (the files, then the ring). fio runs the same volume with
// --ioengine=io_uring --iodepth=4 --bs=1M: buffered with an fdatasync at the
// end (what fsync = interval does), then O_DIRECT, then a sequential read.
//
// With --shmbus and --paced: paced replay accuracy. N messages of 64 B are
// recorded at R per second (a steady producer) on a durable topic whose
// ring holds a small part of them, then `shmbus replay --speed S --json`
// republishes them from the files into another topic at speeds 1, 10 and
// 100; its report (achieved speed, drift, lateness percentiles) is printed.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "shmbus/shmbus.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "shmbus-spill: %s\n", why.c_str());
  std::exit(1);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// fio's bandwidth in MB/s (10^6) for one job.
double fio(const std::string& dir, const std::string& rw, bool direct, std::uint64_t mib) {
  const std::string cmd = "fio --name=shmbus-spill --directory=" + dir + " --rw=" + rw +
                          " --bs=1M --size=" + std::to_string(mib) +
                          "M --ioengine=io_uring --iodepth=4 --direct=" + (direct ? "1" : "0") +
                          (rw == "write" ? " --end_fsync=1" : "") +
                          " --output-format=json 2>/dev/null";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) die("cannot run fio (Debian package fio)");
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  if (::pclose(p) != 0) return 0;  // e.g. O_DIRECT refused by the file system
  const auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) return 0;
  const auto& job = j["jobs"][0][rw == "write" ? "write" : "read"];
  return job["bw_bytes"].get<double>() / 1e6;
}

// Records `messages` at `rate` per second on the durable topic "paced"
// (a 256 KiB ring: nearly all of it is read back from the files), then
// replays it with the tool at speeds 1, 10 and 100; their JSON reports.
std::vector<nlohmann::json> paced_replay(const std::string& tool, std::uint64_t messages,
                                         std::uint64_t rate) {
  shmbus::TopicOptions o;
  o.durable = true;
  o.exclusive_producer = true;
  o.segment_bytes = 64 << 10;
  o.segment_count = 4;
  if (auto ok = shmbus::Topic::create("bench", "paced", o); !ok) die(ok.error().message);
  if (auto ok = shmbus::Topic::create("bench", "sink", shmbus::TopicOptions{}); !ok)
    die(ok.error().message);
  {
    auto producer = shmbus::Producer::open("bench", "paced");
    if (!producer) die(producer.error().message);
    std::byte payload[40] = {};
    const auto interval = std::chrono::nanoseconds(1'000'000'000 / rate);
    const auto began = Clock::now();
    for (std::uint64_t i = 0; i < messages; ++i) {
      while (Clock::now() < began + i * interval) {
      }
      shmbus::Status s;
      while ((s = producer->offer(payload)) == shmbus::Status::Full) std::this_thread::yield();
      if (s != shmbus::Status::Ok) die(std::string("offer: ") + shmbus::to_string(s));
    }
    if (producer->wait_durable(600s) != shmbus::Status::Ok) die("wait_durable failed");
  }
  std::vector<nlohmann::json> reports;
  for (const char* speed : {"1", "10", "100"}) {
    const std::string cmd = tool + " --bus bench replay paced --into sink --json --speed " + speed;
    std::FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) die("cannot run " + tool);
    std::string out;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    if (::pclose(p) != 0) die(cmd + " failed");
    auto j = nlohmann::json::parse(out, nullptr, false);
    if (j.is_discarded() || !j.contains("paced") || j["messages"] != messages)
      die(cmd + ": unexpected report: " + out);
    reports.push_back(std::move(j));
  }
  return reports;
}

}  // namespace

int main(int argc, char** argv) {
  std::string shmbusd, tool, dir = "/tmp";
  std::uint64_t mib = 1024, size = 4000, paced = 0, rate = 100'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--shmbusd")
      shmbusd = argv[i + 1];
    else if (a == "--dir")
      dir = argv[i + 1];
    else if (a == "--mib")
      mib = std::stoull(argv[i + 1]);
    else if (a == "--size")
      size = std::stoull(argv[i + 1]);
    else if (a == "--shmbus")
      tool = argv[i + 1];
    else if (a == "--paced")
      paced = std::stoull(argv[i + 1]);
    else if (a == "--rate")
      rate = std::stoull(argv[i + 1]);
    else
      die("unknown argument " + a);
  }
  if (shmbusd.empty() || (paced != 0 && (tool.empty() || rate == 0)))
    die("usage: shmbus-spill --shmbusd PATH [--dir DIR] [--mib N] [--size B] "
        "[--shmbus PATH --paced N --rate R]");
  const std::string root = dir + "/shmbus-spill-" + std::to_string(::getpid());
  std::filesystem::create_directories(root + "/fio");
  const std::string shm = "/dev/shm/shmbus-spill-" + std::to_string(::getpid());
  ::setenv("SHMBUS_SHM_ROOT", shm.c_str(), 1);
  const std::string sock = root + "/bus.sock";
  ::setenv("SHMBUS_SOCKET", sock.c_str(), 1);
  const pid_t daemon = ::fork();
  if (daemon == 0) {
    ::execl(shmbusd.c_str(), shmbusd.c_str(), "--foreground", "--bus", "bench", "--socket",
            sock.c_str(), "--data-dir", (root + "/data").c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  struct stat st;
  for (int i = 0; ::stat(sock.c_str(), &st) != 0; ++i) {
    if (i > 2000) die("shmbusd did not start");
    std::this_thread::sleep_for(5ms);
  }
  auto cleanup = [&] {
    ::kill(daemon, SIGTERM);
    ::waitpid(daemon, nullptr, 0);
    std::filesystem::remove_all(root);
    std::filesystem::remove_all(shm);
  };

  shmbus::TopicOptions o;
  o.durable = true;
  o.fsync = shmbus::Fsync::Interval;
  o.fsync_interval_ms = 100;
  o.exclusive_producer = true;
  o.segment_bytes = 1 << 20;
  o.segment_count = 16;
  if (auto ok = shmbus::Topic::create("bench", "spill", o); !ok) die(ok.error().message);
  double spill_s = 0, read_s = 0, on_disk = 0;
  std::uint64_t bytes = 0;
  const std::uint64_t messages = (mib << 20) / size;
  {
    auto producer = shmbus::Producer::open("bench", "spill");
    if (!producer) die(producer.error().message);
    std::vector<std::byte> payload(size, std::byte{0x5a});
    const auto began = Clock::now();
    for (std::uint64_t i = 0; i < messages; ++i) {
      shmbus::Status s;
      while ((s = producer->offer(payload)) == shmbus::Status::Full) std::this_thread::yield();
      if (s != shmbus::Status::Ok) die(std::string("offer: ") + shmbus::to_string(s));
    }
    if (producer->wait_durable(600s) != shmbus::Status::Ok) die("wait_durable failed");
    spill_s = seconds_since(began);
    auto info = shmbus::Topic::describe("bench", "spill");
    on_disk = info ? double(info->partitions[0].spill.durable) : 0;

    shmbus::ConsumerOptions co;
    co.start = shmbus::ConsumerOptions::Start::Earliest;
    co.gating = false;
    auto consumer = shmbus::Consumer::open("bench", "spill", co);
    if (!consumer) die(consumer.error().message);
    std::uint64_t read = 0;
    const auto read_began = Clock::now();
    while (read < messages) {
      const auto r = consumer->poll(
          [&](const shmbus::Message& m) {
            ++read;
            bytes += m.payload.size();
          },
          1024);
      if (r.status != shmbus::Status::Ok && r.status != shmbus::Status::Empty)
        die(std::string("replay: ") + shmbus::to_string(r.status));
    }
    read_s = seconds_since(read_began);
  }

  std::vector<nlohmann::json> pacing;
  if (paced != 0) pacing = paced_replay(tool, paced, rate);

  const double fio_buffered = fio(root + "/fio", "write", false, mib);
  const double fio_direct = fio(root + "/fio", "write", true, mib);
  const double fio_read = fio(root + "/fio", "read", false, mib);
  cleanup();

  const double spill_mb = on_disk / 1e6 / spill_s, read_mb = double(bytes) / 1e6 / read_s;
  std::printf("spill (fsync interval 100 ms, %llu x %llu B): %8.1f MB/s\n",
              static_cast<unsigned long long>(messages), static_cast<unsigned long long>(size),
              spill_mb);
  std::printf("fio write, io_uring qd 4, 1 MiB, buffered + fdatasync: %8.1f MB/s  ratio %.2f\n",
              fio_buffered, fio_buffered > 0 ? spill_mb / fio_buffered : 0);
  std::printf("fio write, io_uring qd 4, 1 MiB, O_DIRECT:             %8.1f MB/s  ratio %.2f\n",
              fio_direct, fio_direct > 0 ? spill_mb / fio_direct : 0);
  std::printf("replay from the files (payload bytes):  %8.1f MB/s\n", read_mb);
  std::printf("fio read, io_uring qd 4, 1 MiB, buffered: %8.1f MB/s  ratio %.2f\n", fio_read,
              fio_read > 0 ? read_mb / fio_read : 0);
  if (paced != 0)
    std::printf(
        "paced replay from the files (shmbus replay), %llu x 40 B (64 B frames) recorded at "
        "%llu/s:\n",
        static_cast<unsigned long long>(paced), static_cast<unsigned long long>(rate));
  for (const auto& j : pacing) {
    const auto& p = j["paced"];
    const auto& l = p["lateness_us"];
    std::printf(
        "  speed %3g: %8.3f s for %8.3f s recorded, achieved speed %8.3f, drift %+.4f%%, "
        "lateness p50 %.1f us p99 %.1f us p99.9 %.1f us max %.1f us\n",
        p["speed"].get<double>(), j["elapsed_s"].get<double>(), p["recorded_s"].get<double>(),
        p["achieved_speed"].get<double>(), p["drift_percent"].get<double>(), l["p50"].get<double>(),
        l["p99"].get<double>(), l["p999"].get<double>(), l["max"].get<double>());
  }
  return 0;
}
