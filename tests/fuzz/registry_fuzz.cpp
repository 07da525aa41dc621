// tests/fuzz/registry_fuzz.cpp — the registry's readers (lib/control/registry.cpp):
// decode_entry on each entry, and Registry::open + read on a whole file.
//
// Input: the bytes of a registry file. The target
//   - decodes every 1536-byte entry of the input (the last one zero-padded):
//     an accepted entry must have a valid name, bounded ACL lists and a known
//     state and policy, and encode_entry of the record must decode again to
//     the same record (compared through its encoding);
//   - writes the input as a file (with the FileHeader fields that
//     shm::open_file checks made valid, so that the registry's own checks
//     are reached) and reads it through Registry::open and read(): either an
//     error, or records with distinct valid names, at most one per entry.
// The generation is made even: an odd one only makes read() retry for 0.1 s.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "control/registry.hpp"
#include "fuzz_check.hpp"
#include "log/ring.hpp"
#include "shm/name.hpp"

using namespace shmbus;
using namespace shmbus::control;

namespace {

void check_record(const TopicRecord& r) {
  FUZZ_CHECK(static_cast<std::uint32_t>(r.state) <= 3);
  FUZZ_CHECK(shm::check_name("topic", r.name));
  FUZZ_CHECK(r.options.partitions >= 1 && r.options.partitions <= 1024);
  FUZZ_CHECK(r.options.policy == Policy::Block || r.options.policy == Policy::Overwrite);
  FUZZ_CHECK(r.numa_node >= -1 && r.numa_node <= 4095);
  FUZZ_CHECK((r.acl.mode & ~0775u) == 0);
  for (const auto* ids : {&r.acl.producer_users, &r.acl.producer_groups, &r.acl.consumer_users,
                          &r.acl.consumer_groups})
    FUZZ_CHECK(ids->size() <= kMaxIds);
}

void fuzz_entry(const RegistryEntry& e) {
  auto r = decode_entry(e);
  if (!r) return;
  check_record(*r);
  const RegistryEntry once = encode_entry(*r);
  auto again = decode_entry(once);
  FUZZ_CHECK(again);
  const RegistryEntry twice = encode_entry(*again);
  FUZZ_CHECK(std::memcmp(&once, &twice, sizeof once) == 0);
}

const std::string& scratch_file() {
  static const std::string path = [] {
    char dir[] = "/dev/shm/shmbus-registry-fuzz-XXXXXX";
    FUZZ_CHECK(::mkdtemp(dir) != nullptr);
    static std::string d = dir;
    std::atexit([] {
      (void)::unlink((d + "/registry").c_str());
      (void)::rmdir(d.c_str());
    });
    return d + "/registry";
  }();
  return path;
}

void fuzz_file(const std::uint8_t* data, std::size_t size) {
  if (size < sizeof(RegistryHeader)) return;
  std::string bytes(reinterpret_cast<const char*>(data), size);
  RegistryHeader h;
  std::memcpy(&h, bytes.data(), sizeof h);
  h.file.magic = shm::kMagic;
  h.file.layout_version = shm::kLayoutVersion;
  h.file.kind = shm::FileKind::Registry;
  h.file.file_bytes = size;
  h.file.header_bytes = sizeof(RegistryHeader);
  h.generation &= ~std::uint64_t{1};
  std::memcpy(bytes.data(), &h, sizeof h);

  const std::string& path = scratch_file();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);

  auto reg = Registry::open(path);
  if (!reg) return;
  const std::size_t entries = (size - sizeof(RegistryHeader)) / sizeof(RegistryEntry);
  for (bool all : {true, false}) {
    auto records = reg->read(all);
    if (!records) continue;
    FUZZ_CHECK(records->size() <= entries);
    std::set<std::string> names;
    for (const TopicRecord& r : *records) {
      check_record(r);
      FUZZ_CHECK(all || r.state == EntryState::Live);
      FUZZ_CHECK(names.insert(r.name).second);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Entries as they would sit after a header, and as the whole input.
  const std::size_t from = size >= sizeof(RegistryHeader) ? sizeof(RegistryHeader) : 0;
  for (std::size_t at = from; at < size || at == from; at += sizeof(RegistryEntry)) {
    RegistryEntry e{};
    std::memcpy(&e, data + at, std::min(sizeof e, size - at));
    fuzz_entry(e);
    if (size - at <= sizeof(RegistryEntry)) break;
  }
  fuzz_file(data, size);
  return 0;
}
