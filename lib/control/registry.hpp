// lib/control/registry.hpp — the bus's catalogue of topics in shared memory:
// what a restarted shmbusd needs to adopt every topic (name, options, ACL,
// partition count), and what clients may read without asking the daemon.
//
// One file per bus, `<bus directory>/registry`, next to the ring files.
//
//   WRITER: shmbusd only (the conductor thread), through Registry::open_or_create,
//           which holds an exclusive flock(2) on the file for as long as the
//           Registry lives: one daemon per bus (the kernel drops the lock
//           when the daemon dies, even by kill -9).
//           Created with mode 0644: readable by whoever reaches the bus
//           directory, never writable by anybody but the daemon's user.
//   READERS: clients (Registry::open), which map it read-only (PROT_READ), and
//           a restarting shmbusd. Both treat every byte as untrusted: each
//           entry is copied out and validated before use, and a damaged file
//           is an error naming the file, never a crash.
//
// Registry file
//   0     FileHeader (64), kind Registry
//   64    generation    u64  seqlock word, see below
//   72    capacity      u32  entries in the file
//   76    entry_bytes   u32  sizeof(RegistryEntry)
//   80    writer_pid    u32  the daemon that last opened it for writing
//   84    reserved      u32
//   88    writer_start  u64  that daemon's start time
//   96    reserved[160]
//   256   RegistryEntry x capacity (1536 bytes each)
//
// The generation is a seqlock: the daemon makes it odd, rewrites one entry
// word by word (relaxed), then makes it even again (release). It changes on
// every create and delete, so a client notices a change by comparing one
// word. A reader loads it (acquire), copies entries word by word (relaxed),
// issues an acquire fence and reloads it: the copy is consistent when both
// loads are the same even value. A daemon that dies mid-write leaves the
// generation odd; readers give up after a bounded number of tries with an
// error, and the next daemon repairs it when it opens the file.
//
// Entry states (crash-only creation and deletion): the daemon writes an entry
// Creating before it creates the topic's files and Live after; Deleting
// before it removes them and Free after. A restarted daemon finishes what a
// Creating or Deleting entry says was half-done (it removes the files).
// Readers show Live entries only.
//
// Concurrency: a Registry object is used by one thread at a time; any number
// of processes may read the file while the daemon writes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "control/client.hpp"
#include "control/protocol.hpp"
#include "shm/file.hpp"
#include "shmbus/options.hpp"
#include "shmbus/status.hpp"

namespace shmbus::control {

enum class EntryState : std::uint32_t { Free = 0, Creating = 1, Live = 2, Deleting = 3 };

inline constexpr std::uint32_t kRegistryCapacity = 4096;  // topics per bus
inline constexpr std::size_t kAclLists =
    4;  // producer users, producer groups, consumer users, groups

// One topic, as stored. Plain data, 8-byte words: copied word by word.
//   0    state          u32  EntryState
//   4    name_bytes     u16  1..kMaxName
//   6    reserved       u16
//   8    name[200]
//   208  partitions     u32
//   212  segment_count  u32
//   216  segment_bytes  u64
//   224  alignment      u32
//   228  max_producers  u32
//   232  max_consumers  u32
//   236  numa_node      i32  -1: anywhere
//   240  policy u8, exclusive u8, reserved[2]
//   244  owner_uid, group_gid, mode  u32 x 3
//   256  id_counts      u16 x 4  each <= kMaxIds
//   264  ids            u32 x 4 x kMaxIds
//   1288 hung_producer_timeout_ms, slow_consumer_timeout_ms  u32 x 2
//   1296 durable u8, fsync u8, reserved u16, fsync_interval_ms u32 (zero: not durable)
//   1304 retention_bytes, retention_ms  u64 x 2 (zero: no limit)
//   1320 reserved, to 1536
struct RegistryEntry {
  std::uint32_t state;
  std::uint16_t name_bytes;
  std::uint16_t reserved0;
  char name[kMaxName];
  std::uint32_t partitions;
  std::uint32_t segment_count;
  std::uint64_t segment_bytes;
  std::uint32_t frame_alignment;
  std::uint32_t max_producers;
  std::uint32_t max_consumers;
  std::int32_t numa_node;
  std::uint8_t policy;
  std::uint8_t exclusive;
  std::uint8_t reserved1[2];
  std::uint32_t owner_uid;
  std::uint32_t group_gid;
  std::uint32_t mode;
  std::uint16_t id_counts[kAclLists];
  std::uint32_t ids[kAclLists][kMaxIds];
  std::uint32_t hung_producer_timeout_ms;
  std::uint32_t slow_consumer_timeout_ms;
  std::uint8_t durable;
  std::uint8_t fsync;
  std::uint16_t reserved2;
  std::uint32_t fsync_interval_ms;
  std::uint64_t retention_bytes;
  std::uint64_t retention_ms;
  std::uint8_t reserved3[216];
};
static_assert(offsetof(RegistryEntry, name) == 8);
static_assert(offsetof(RegistryEntry, partitions) == 208);
static_assert(offsetof(RegistryEntry, segment_bytes) == 216);
static_assert(offsetof(RegistryEntry, numa_node) == 236);
static_assert(offsetof(RegistryEntry, policy) == 240);
static_assert(offsetof(RegistryEntry, owner_uid) == 244);
static_assert(offsetof(RegistryEntry, id_counts) == 256);
static_assert(offsetof(RegistryEntry, ids) == 264);
static_assert(offsetof(RegistryEntry, hung_producer_timeout_ms) == 1288);
static_assert(offsetof(RegistryEntry, durable) == 1296);
static_assert(offsetof(RegistryEntry, retention_bytes) == 1304);
static_assert(sizeof(RegistryEntry) == 1536);
static_assert(sizeof(RegistryEntry) % 8 == 0);

struct RegistryHeader {
  shm::FileHeader file;
  std::uint64_t generation;
  std::uint32_t capacity;
  std::uint32_t entry_bytes;
  std::uint32_t writer_pid;
  std::uint32_t reserved0;
  std::uint64_t writer_start;
  std::uint8_t reserved[160];
};
static_assert(offsetof(RegistryHeader, generation) == 64);
static_assert(offsetof(RegistryHeader, capacity) == 72);
static_assert(offsetof(RegistryHeader, entry_bytes) == 76);
static_assert(offsetof(RegistryHeader, writer_pid) == 80);
static_assert(offsetof(RegistryHeader, writer_start) == 88);
static_assert(sizeof(RegistryHeader) == 256);

// A decoded, validated entry.
struct TopicRecord {
  EntryState state = EntryState::Free;
  std::string name;
  TopicOptions options;
  int numa_node = -1;
  Acl acl;
};

std::string registry_path(const std::string& bus_directory);

// The stored form of a record, and back. decode_entry validates what a reader
// needs to use an entry safely (lengths within their arrays, names that are
// names, enumerations with known values); the daemon checks the options'
// ranges on top (daemon/config.hpp check_topic). Pure functions: exposed for
// the fuzzer (tests/fuzz/registry_fuzz.cpp).
RegistryEntry encode_entry(const TopicRecord& record);
Result<TopicRecord> decode_entry(const RegistryEntry& entry);

class Registry {
 public:
  // A client's view: maps the file read-only and checks its header.
  static Result<Registry> open(const std::string& path);
  // The daemon's: opens the file read-write (checking it as a reader does,
  // and repairing an odd generation), or creates an empty one; fails when
  // another live daemon holds it.
  static Result<Registry> open_or_create(const std::string& path);

  // The current generation (acquire); even when no write is under way.
  std::uint64_t generation() const noexcept;
  // A consistent copy of the Live entries (with `all_states`, of every
  // entry that is not Free), each validated; an error names the file and the entry.
  Result<std::vector<TopicRecord>> read(bool all_states = false) const;

  // Daemon only: writes `record` into the entry of its name, or a free one.
  Outcome put(const TopicRecord& record);
  // Daemon only: frees the entry of `name` (no-op when there is none).
  void erase(const std::string& name);

  const std::string& path() const noexcept { return path_; }

 private:
  Registry(shm::Mapping m, std::string path, bool writable);
  RegistryHeader* header() const noexcept;
  RegistryEntry* entry(std::uint32_t i) const noexcept;
  Outcome check_header() const;
  void write_entry(std::uint32_t i, const RegistryEntry& e);
  int find(const std::string& name, bool or_free) const;

  shm::Mapping map_;
  Fd writer_lock_;  // the daemon's: flock(LOCK_EX) on the file
  std::string path_;
  bool writable_ = false;
  std::uint32_t capacity_ = 0;
};

}  // namespace shmbus::control
