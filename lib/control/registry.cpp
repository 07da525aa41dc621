// lib/control/registry.cpp — see registry.hpp.
#include "control/registry.hpp"

#include <fcntl.h>
#include <sys/file.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>
#include <utility>

#include "shm/name.hpp"
#include "shm/process.hpp"

namespace shmbus::control {
namespace {

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
constexpr std::size_t kEntryWords = sizeof(RegistryEntry) / 8;
// A write takes microseconds; 1000 tries 100 us apart give a writer 0.1 s.
constexpr int kReadTries = 1000;

std::atomic_ref<std::uint64_t> word(void* base, std::size_t i) {
  return std::atomic_ref<std::uint64_t>(static_cast<std::uint64_t*>(base)[i]);
}

// The ACL's id lists in the order of RegistryEntry::ids.
template <class AclT>
auto acl_lists(AclT& a) {
  return std::array{&a.producer_users, &a.producer_groups, &a.consumer_users, &a.consumer_groups};
}
static_assert(std::tuple_size_v<decltype(acl_lists(std::declval<Acl&>()))> == kAclLists);

}  // namespace

RegistryEntry encode_entry(const TopicRecord& r) {
  RegistryEntry e{};
  e.state = static_cast<std::uint32_t>(r.state);
  e.name_bytes = static_cast<std::uint16_t>(r.name.size());
  std::memcpy(e.name, r.name.data(), r.name.size());
  e.partitions = r.options.partitions;
  e.segment_count = r.options.segment_count;
  e.segment_bytes = r.options.segment_bytes;
  e.frame_alignment = r.options.frame_alignment;
  e.max_producers = r.options.max_producers;
  e.max_consumers = r.options.max_consumers;
  e.numa_node = r.numa_node;
  e.policy = static_cast<std::uint8_t>(r.options.policy);
  e.exclusive = r.options.exclusive_producer ? 1 : 0;
  e.hung_producer_timeout_ms = r.options.hung_producer_timeout_ms;
  e.slow_consumer_timeout_ms = r.options.slow_consumer_timeout_ms;
  e.durable = r.options.durable ? 1 : 0;
  e.fsync = static_cast<std::uint8_t>(r.options.fsync);
  e.fsync_interval_ms = r.options.fsync_interval_ms;
  e.retention_bytes = r.options.retention_bytes;
  e.retention_ms = r.options.retention_ms;
  e.owner_uid = r.acl.owner_uid;
  e.group_gid = r.acl.group_gid;
  e.mode = r.acl.mode;
  for (std::size_t k = 0; k < kAclLists; ++k) {
    const auto& ids = *acl_lists(r.acl)[k];
    e.id_counts[k] = static_cast<std::uint16_t>(ids.size());
    std::copy(ids.begin(), ids.end(), e.ids[k]);
  }
  return e;
}

Result<TopicRecord> decode_entry(const RegistryEntry& e) {
  auto bad = [](std::string what) { return Error{EPROTO, std::move(what)}; };
  if (e.state > static_cast<std::uint32_t>(EntryState::Deleting))
    return bad("state " + std::to_string(e.state) + " is not 0..3");
  if (e.name_bytes == 0 || e.name_bytes > kMaxName)
    return bad("name length " + std::to_string(e.name_bytes) + " is not 1.." +
               std::to_string(kMaxName));
  TopicRecord r;
  r.state = static_cast<EntryState>(e.state);
  r.name.assign(e.name, e.name_bytes);
  if (auto ok = shm::check_name("topic", r.name); !ok) return bad(ok.error().message);
  if (e.partitions < 1 || e.partitions > 1024)
    return bad("topic " + r.name + ": partitions " + std::to_string(e.partitions) +
               " is not 1..1024");
  if (e.policy != static_cast<std::uint8_t>(Policy::Block) &&
      e.policy != static_cast<std::uint8_t>(Policy::Overwrite))
    return bad("topic " + r.name + ": policy " + std::to_string(e.policy) + " is unknown");
  if (e.exclusive > 1) return bad("topic " + r.name + ": exclusive is not 0 or 1");
  if (e.numa_node < -1 || e.numa_node > 4095)
    return bad("topic " + r.name + ": numa_node " + std::to_string(e.numa_node) +
               " is not -1..4095");
  if ((e.mode & ~0777u) != 0 || (e.mode & 0002u) != 0)
    return bad("topic " + r.name + ": mode " + std::to_string(e.mode) +
               " has bits outside 0777 or is world-writable");
  r.options.partitions = e.partitions;
  r.options.segment_count = e.segment_count;
  r.options.segment_bytes = e.segment_bytes;
  r.options.frame_alignment = e.frame_alignment;
  r.options.max_producers = e.max_producers;
  r.options.max_consumers = e.max_consumers;
  r.options.policy = static_cast<Policy>(e.policy);
  r.options.exclusive_producer = e.exclusive != 0;
  r.options.hung_producer_timeout_ms = e.hung_producer_timeout_ms;
  r.options.slow_consumer_timeout_ms = e.slow_consumer_timeout_ms;
  // Entries written before durability have zeros here: not durable.
  if (e.durable != 0) {
    if (e.durable > 1 || e.fsync < 1 || e.fsync > 3)
      return bad("topic " + r.name + ": durable " + std::to_string(e.durable) + " / fsync " +
                 std::to_string(e.fsync) + " are not values this version writes");
    r.options.durable = true;
    r.options.fsync = static_cast<Fsync>(e.fsync);
    r.options.fsync_interval_ms = e.fsync_interval_ms;
    r.options.retention_bytes = e.retention_bytes;
    r.options.retention_ms = e.retention_ms;
  }
  r.options.mode = e.mode;
  r.numa_node = e.numa_node;
  if (e.numa_node >= 0) r.options.placement = {Placement::Kind::Node, e.numa_node};
  r.acl.owner_uid = e.owner_uid;
  r.acl.group_gid = e.group_gid;
  r.acl.mode = e.mode;
  for (std::size_t k = 0; k < kAclLists; ++k) {
    if (e.id_counts[k] > kMaxIds)
      return bad("topic " + r.name + ": ACL list " + std::to_string(k) + " has " +
                 std::to_string(e.id_counts[k]) + " ids, over " + std::to_string(kMaxIds));
    acl_lists(r.acl)[k]->assign(e.ids[k], e.ids[k] + e.id_counts[k]);
  }
  return r;
}

std::string registry_path(const std::string& bus_directory) {
  return bus_directory + "/registry";
}

Registry::Registry(shm::Mapping m, std::string path, bool writable)
    : map_(std::move(m)), path_(std::move(path)), writable_(writable) {}

RegistryHeader* Registry::header() const noexcept {
  return reinterpret_cast<RegistryHeader*>(map_.data());
}

RegistryEntry* Registry::entry(std::uint32_t i) const noexcept {
  return reinterpret_cast<RegistryEntry*>(map_.data() + sizeof(RegistryHeader)) + i;
}

// The header's geometry is read once, here; the entry count comes from the
// file size, so nothing later trusts a size read from shared memory.
Outcome Registry::check_header() const {
  const RegistryHeader& h = *header();
  const std::size_t size = map_.size();
  if (size < sizeof(RegistryHeader))
    return Error{EPROTO, "registry " + path_ + " is damaged: " + std::to_string(size) +
                             " bytes is too small for its header"};
  if (h.entry_bytes != sizeof(RegistryEntry))
    return Error{EPROTO, "registry " + path_ + " is damaged: entries of " +
                             std::to_string(h.entry_bytes) + " bytes, expected " +
                             std::to_string(sizeof(RegistryEntry))};
  if (h.capacity == 0 || h.capacity > kRegistryCapacity ||
      sizeof(RegistryHeader) + std::uint64_t{h.capacity} * sizeof(RegistryEntry) != size)
    return Error{EPROTO, "registry " + path_ + " is damaged: capacity " +
                             std::to_string(h.capacity) + " does not match its size of " +
                             std::to_string(size) + " bytes"};
  return Done{};
}

Result<Registry> Registry::open(const std::string& path) {
  auto m = shm::open_file(path, shm::FileKind::Registry, {.writable = false, .prefault = false});
  if (!m) return m.error();
  Registry r(std::move(m).value(), path, false);
  if (auto ok = r.check_header(); !ok) return ok.error();
  r.capacity_ = r.header()->capacity;
  return r;
}

Result<Registry> Registry::open_or_create(const std::string& path) {
  auto m = shm::open_file(path, shm::FileKind::Registry, {.writable = true, .prefault = true});
  if (!m && m.error().code == ENOENT) {
    const std::size_t bytes = sizeof(RegistryHeader) + kRegistryCapacity * sizeof(RegistryEntry);
    m = shm::create_file(path, shm::FileKind::Registry, bytes, sizeof(RegistryHeader), 0644,
                         {.writable = true, .prefault = true}, [](std::byte* base) {
                           auto* h = reinterpret_cast<RegistryHeader*>(base);
                           h->capacity = kRegistryCapacity;
                           h->entry_bytes = sizeof(RegistryEntry);
                         });
    if (!m && m.error().code == EEXIST)  // created meanwhile by another daemon
      return Error{EEXIST, "registry " + path + " appeared while this daemon created it"};
  }
  if (!m) return Error{m.error().code, "registry: " + m.error().message};
  Registry r(std::move(m).value(), path, true);
  if (auto ok = r.check_header(); !ok) return ok.error();
  // Nothing is written before the lock is ours.
  r.writer_lock_ = Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (r.writer_lock_.get() < 0 || ::flock(r.writer_lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    if (e == EWOULDBLOCK)
      return Error{EBUSY, "registry " + path + " is held by another shmbusd (pid " +
                              std::to_string(r.header()->writer_pid) + ") serving this bus"};
    return Error{e, "registry " + path + ": " + std::strerror(e)};
  }
  r.capacity_ = r.header()->capacity;
  RegistryHeader& h = *r.header();
  // Relaxed: only this process writes the header; readers read the generation only.
  auto gen = std::atomic_ref<std::uint64_t>(h.generation);
  // A writer that died mid-write left the generation odd: the entry it wrote
  // is checked below like every other one, so make the file readable again.
  if (gen.load(std::memory_order_relaxed) % 2 != 0)
    gen.store(gen.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  h.writer_pid = shm::self().pid;
  h.writer_start = shm::self().start_time;
  return r;
}

std::uint64_t Registry::generation() const noexcept {
  // SYNC POINT: pairs with the release store that ends a write in write_entry.
  return std::atomic_ref<std::uint64_t>(header()->generation).load(std::memory_order_acquire);
}

Result<std::vector<TopicRecord>> Registry::read(bool all_states) const {
  auto gen = std::atomic_ref<std::uint64_t>(header()->generation);
  std::vector<RegistryEntry> copies;
  std::vector<std::uint32_t> index;
  for (int attempt = 0;; ++attempt) {
    if (attempt == kReadTries)
      return Error{EAGAIN, "registry " + path_ + " is being written for too long (generation " +
                               std::to_string(gen.load(std::memory_order_relaxed)) +
                               " stays odd: did shmbusd die while writing? restart it)"};
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
    // SYNC POINT: pairs with the release store that ends a write in write_entry.
    const std::uint64_t before = gen.load(std::memory_order_acquire);
    if (before % 2 != 0) continue;
    copies.clear();
    index.clear();
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      // Relaxed: the generation check below decides whether the copy counts.
      if (word(entry(i), 0).load(std::memory_order_relaxed) == 0) continue;  // Free, name_bytes 0
      RegistryEntry& e = copies.emplace_back();
      for (std::size_t w = 0; w < kEntryWords; ++w) {
        const std::uint64_t v = word(entry(i), w).load(std::memory_order_relaxed);
        std::memcpy(reinterpret_cast<std::byte*>(&e) + w * 8, &v, 8);
      }
      index.push_back(i);
    }
    // Keeps the relaxed loads above before the reload of the generation.
    std::atomic_thread_fence(std::memory_order_acquire);
    if (gen.load(std::memory_order_relaxed) == before) break;
  }
  std::vector<TopicRecord> out;
  std::set<std::string> names;
  for (std::size_t k = 0; k < copies.size(); ++k) {
    if (copies[k].state == static_cast<std::uint32_t>(EntryState::Free)) continue;
    auto r = decode_entry(copies[k]);
    if (!r)
      return Error{EPROTO, "registry " + path_ + " is damaged: entry " + std::to_string(index[k]) +
                               ": " + r.error().message};
    if (!names.insert(r->name).second)
      return Error{EPROTO, "registry " + path_ + " is damaged: entry " + std::to_string(index[k]) +
                               " repeats topic " + r->name};
    if (all_states || r->state == EntryState::Live) out.push_back(std::move(r).value());
  }
  return out;
}

void Registry::write_entry(std::uint32_t i, const RegistryEntry& e) {
  auto gen = std::atomic_ref<std::uint64_t>(header()->generation);
  const std::uint64_t g = gen.load(std::memory_order_relaxed);  // only this thread writes it
  gen.store(g + 1, std::memory_order_relaxed);
  // Keeps the odd generation before every entry store below (the seqlock's writer fence).
  std::atomic_thread_fence(std::memory_order_release);
  for (std::size_t w = 0; w < kEntryWords; ++w) {
    std::uint64_t v;
    std::memcpy(&v, reinterpret_cast<const std::byte*>(&e) + w * 8, 8);
    word(entry(i), w)
        .store(v, std::memory_order_relaxed);  // ordered by the fence and the store below
  }
  gen.store(g + 2, std::memory_order_release);  // SYNC POINT: readers' acquire loads
}

int Registry::find(const std::string& name, bool or_free) const {
  int free_entry = -1;
  for (std::uint32_t i = 0; i < capacity_; ++i) {
    const RegistryEntry& e = *entry(i);  // written by this thread only: plain reads suffice
    if (e.state == static_cast<std::uint32_t>(EntryState::Free)) {
      if (free_entry < 0) free_entry = static_cast<int>(i);
      continue;
    }
    if (e.name_bytes == name.size() && std::memcmp(e.name, name.data(), name.size()) == 0)
      return static_cast<int>(i);
  }
  return or_free ? free_entry : -1;
}

Outcome Registry::put(const TopicRecord& record) {
  if (!writable_) return Error{EROFS, "registry " + path_ + " is open read-only"};
  if (record.name.empty() || record.name.size() > kMaxName)
    return Error{EINVAL, "topic name of " + std::to_string(record.name.size()) + " bytes"};
  const int i = find(record.name, true);
  if (i < 0)
    return Error{ENOSPC,
                 "registry " + path_ + " is full (" + std::to_string(capacity_) + " topics)"};
  write_entry(static_cast<std::uint32_t>(i), encode_entry(record));
  return Done{};
}

void Registry::erase(const std::string& name) {
  if (!writable_) return;
  const int i = find(name, false);
  if (i >= 0) write_entry(static_cast<std::uint32_t>(i), RegistryEntry{});
}

}  // namespace shmbus::control
