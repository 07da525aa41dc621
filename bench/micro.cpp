// shmbus-micro — single-thread costs of the hot-path calls (Google Benchmark).
//
//   BM_Offer         offer on an `overwrite` topic with no consumer (never Full)
//   BM_ClaimCommit   claim + 8-byte write + commit, same topic
//   BM_OfferPoll     offer then poll of that message, one thread, `block` topic
//   BM_PollEmpty     poll of an empty ring
//   BM_Memcpy        memcpy of the payload between two private buffers (reference)
//   BM_Crc32c        the segment files' checksum over 64 KiB (log/crc32c.hpp), with
//                    the instruction (path 1) or the byte table (path 0)
//
// Arguments: payload bytes, timestamps (ProducerOptions::timestamps) and
// exclusive (TopicOptions::exclusive_producer: local tail instead of fetch_add).
// Topics live in a private bus root under /dev/shm (SHMBUS_SHM_ROOT), removed at exit.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "log/crc32c.hpp"
#include "shmbus/shmbus.hpp"

namespace {

const char* const kBus = "micro";

// A topic that exists for one benchmark run, removed afterwards.
class ScopedTopic {
 public:
  ScopedTopic(benchmark::State& state, const shmbus::TopicOptions& options)
      : name_("t" + std::to_string(serial_++)) {
    if (auto ok = shmbus::Topic::create(kBus, name_, options); !ok) {
      state.SkipWithError(ok.error().message.c_str());
      name_.clear();
    }
  }
  ScopedTopic(const ScopedTopic&) = delete;
  ScopedTopic& operator=(const ScopedTopic&) = delete;
  ~ScopedTopic() {
    if (!name_.empty()) (void)shmbus::Topic::remove(kBus, name_);
  }
  bool ok() const { return !name_.empty(); }
  const std::string& name() const { return name_; }

 private:
  static inline int serial_ = 0;
  std::string name_;
};

shmbus::TopicOptions topic(shmbus::Policy policy, bool exclusive) {
  shmbus::TopicOptions o;
  o.policy = policy;
  o.frame_alignment = 64;
  o.exclusive_producer = exclusive;
  o.segment_bytes = 1u << 20;
  o.segment_count = 4;
  return o;
}

template <class T>
bool open_or_skip(benchmark::State& state, shmbus::Result<T>& r) {
  if (r) return true;
  state.SkipWithError(r.error().message.c_str());
  return false;
}

void set_bytes(benchmark::State& state, std::size_t payload) {
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(payload));
}

void BM_Offer(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  ScopedTopic t(state, topic(shmbus::Policy::Overwrite, state.range(2) != 0));
  if (!t.ok()) return;
  shmbus::ProducerOptions po;
  po.timestamps = state.range(1) != 0;
  auto p = shmbus::Producer::open(kBus, t.name(), po);
  if (!open_or_skip(state, p)) return;
  std::vector<std::byte> msg(size, std::byte{1});
  for (auto _ : state) {
    shmbus::Status s = p->offer(msg);
    if (s != shmbus::Status::Ok) {
      state.SkipWithError(shmbus::to_string(s));
      break;
    }
  }
  set_bytes(state, size);
}

void BM_ClaimCommit(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  ScopedTopic t(state, topic(shmbus::Policy::Overwrite, state.range(2) != 0));
  if (!t.ok()) return;
  shmbus::ProducerOptions po;
  po.timestamps = state.range(1) != 0;
  auto p = shmbus::Producer::open(kBus, t.name(), po);
  if (!open_or_skip(state, p)) return;
  std::uint64_t i = 0;
  for (auto _ : state) {
    shmbus::Claim c;
    shmbus::Status s = p->claim(size, c);
    if (s == shmbus::Status::Ok) {
      std::memcpy(c.payload.data(), &i, sizeof i);  // the payload is the caller's to fill
      ++i;
      s = p->commit(c);
    }
    if (s != shmbus::Status::Ok) {
      state.SkipWithError(shmbus::to_string(s));
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_OfferPoll(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  ScopedTopic t(state, topic(shmbus::Policy::Block, state.range(2) != 0));
  if (!t.ok()) return;
  auto c = shmbus::Consumer::open(kBus, t.name());
  if (!open_or_skip(state, c)) return;
  shmbus::ProducerOptions po;
  po.timestamps = state.range(1) != 0;
  auto p = shmbus::Producer::open(kBus, t.name(), po);
  if (!open_or_skip(state, p)) return;
  std::vector<std::byte> msg(size, std::byte{1});
  std::uint64_t seen = 0;
  auto on = [&](const shmbus::Message& m) {
    seen += m.payload.size();
    benchmark::DoNotOptimize(m.payload.data());
  };
  for (auto _ : state) {
    shmbus::Status s = p->offer(msg);
    if (s == shmbus::Status::Ok) s = c->poll(on, 64).status;
    if (s != shmbus::Status::Ok) {
      state.SkipWithError(shmbus::to_string(s));
      break;
    }
  }
  benchmark::DoNotOptimize(seen);
  set_bytes(state, size);
}

void BM_PollEmpty(benchmark::State& state) {
  ScopedTopic t(state, topic(shmbus::Policy::Block, true));
  if (!t.ok()) return;
  auto c = shmbus::Consumer::open(kBus, t.name());
  if (!open_or_skip(state, c)) return;
  std::uint64_t seen = 0;
  auto on = [&](const shmbus::Message&) { ++seen; };
  for (auto _ : state) {
    shmbus::PollResult r = c->poll(on, 64);
    benchmark::DoNotOptimize(r);
  }
  if (seen != 0) state.SkipWithError("an empty ring delivered a message");
}

void BM_Memcpy(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  std::vector<std::byte> from(size, std::byte{1}), to(size);
  for (auto _ : state) {
    std::memcpy(to.data(), from.data(), size);
    benchmark::DoNotOptimize(to.data());
    benchmark::ClobberMemory();
  }
  set_bytes(state, size);
}

void BM_Crc32c(benchmark::State& state) {
  std::vector<std::byte> data(64 * 1024, std::byte{0x5a});
  const bool instruction = state.range(0) != 0;
  if (instruction && !shmbus::log::crc32c_hardware()) {
    state.SkipWithError("no SSE4.2 crc32 instruction on this CPU");
    return;
  }
  for (auto _ : state) {
    std::uint32_t crc =
        instruction ? shmbus::log::crc32c(data) : shmbus::log::crc32c_portable(data);
    benchmark::DoNotOptimize(crc);
  }
  set_bytes(state, data.size());
}

BENCHMARK(BM_Offer)->ArgNames({"bytes", "ts", "excl"})->ArgsProduct({{64, 1024}, {1, 0}, {0, 1}});
BENCHMARK(BM_ClaimCommit)
    ->ArgNames({"bytes", "ts", "excl"})
    ->ArgsProduct({{64, 1024}, {1, 0}, {0, 1}});
BENCHMARK(BM_OfferPoll)->ArgNames({"bytes", "ts", "excl"})->ArgsProduct({{64, 1024}, {1, 0}, {1}});
BENCHMARK(BM_PollEmpty);
BENCHMARK(BM_Memcpy)->ArgName("bytes")->Arg(64)->Arg(1024);
BENCHMARK(BM_Crc32c)->ArgName("path")->Arg(1)->Arg(0);

}  // namespace

int main(int argc, char** argv) {
  char root[] = "/dev/shm/shmbus-micro.XXXXXX";
  if (::mkdtemp(root) == nullptr) {
    std::fprintf(stderr, "shmbus-micro: cannot create a bus root under /dev/shm: %s\n",
                 std::strerror(errno));
    return 1;
  }
  ::setenv("SHMBUS_SHM_ROOT", root, 1);
  int rc = 0;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    rc = 1;
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  return rc;
}
