// lib/shm/file.hpp — shared-memory files in a bus directory, their mappings,
// and the versioned header every shmbus file starts with.
//
// A file is created complete or not at all: it is written under a temporary
// name and link()ed into place, so a process that opens it never sees a
// half-initialised header. Attaching checks the header (magic, kind, layout
// version, size) and refuses a mismatch with an error naming the file and the
// field that differs; it never "opens or creates" a stale file.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/status.hpp"

namespace shmbus::shm {

inline constexpr std::size_t kCacheLine = 64;
// Hot words that different processes write sit this far apart: the adjacent-
// line prefetcher pulls lines in pairs (STYLE.md 3).
inline constexpr std::size_t kFalseSharingRange = 128;

inline constexpr std::uint64_t kMagic = 0x5355424d48530a01ull;  // "\x01\nSHMBUS" little-endian
// 2: pending and skip commit words (revocable claims), the supervision
// timeouts in the ring header, evicted cursor slots, CursorSlot::asleep.
// 3: a slot's holder pid in its control word, its start time in a stamp.
// 4: frame type ranges (control frames), must-understand and advisory flags,
// ring feature bits, typed properties, named cursor slots.
inline constexpr std::uint32_t kLayoutVersion = 4;

enum class FileKind : std::uint32_t { Ring = 1, Cursors = 2, Registry = 3 };

// First 64 bytes of every shmbus file. Written once by the creator, before
// the file gets its name; read-only afterwards.
//
//   0  magic            u64
//   8  layout_version   u32
//  12  kind             u32   FileKind
//  16  file_bytes       u64   whole file size
//  24  header_bytes     u32   where the kind's own header ends
//  28  creator_pid      u32
//  32  creator_start    u64   creator's start time (clock ticks since boot)
//  40  created_ns       i64   CLOCK_REALTIME at creation
//  48  reserved[16]
struct FileHeader {
  std::uint64_t magic;
  std::uint32_t layout_version;
  FileKind kind;
  std::uint64_t file_bytes;
  std::uint32_t header_bytes;
  std::uint32_t creator_pid;
  std::uint64_t creator_start;
  std::int64_t created_ns;
  std::uint8_t reserved[16];
};
static_assert(sizeof(FileHeader) == 64);
static_assert(offsetof(FileHeader, kind) == 12);
static_assert(offsetof(FileHeader, file_bytes) == 16);
static_assert(offsetof(FileHeader, header_bytes) == 24);
static_assert(offsetof(FileHeader, creator_pid) == 28);
static_assert(offsetof(FileHeader, created_ns) == 40);

const char* to_string(FileKind k) noexcept;

// "/dev/shm/shmbus/<bus>" unless SHMBUS_SHM_ROOT overrides "/dev/shm/shmbus".
std::string bus_directory(std::string_view bus);
// mkdir -p with mode 0750 for the directories it creates.
Outcome make_directory(const std::string& path);

// An Error for a failed system call: `what` (naming the object), then
// strerror(err).
Error sys_error(int err, const std::string& what);

struct MapOptions {
  bool writable = false;
  bool prefault = true;
  bool huge_pages = false;
  bool lock = false;
  int numa_node = -1;  // create_file: bind the pages to this node (-1: anywhere)
};

// A mapped file. Move-only; unmaps on destruction.
class Mapping {
 public:
  Mapping() = default;
  Mapping(void* base, std::size_t size) : base_(base), size_(size) {}
  Mapping(Mapping&& o) noexcept : base_(o.base_), size_(o.size_) { o.base_ = nullptr; }
  Mapping& operator=(Mapping&& o) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  std::byte* data() const noexcept { return static_cast<std::byte*>(base_); }
  std::size_t size() const noexcept { return size_; }
  const FileHeader& header() const noexcept { return *static_cast<const FileHeader*>(base_); }

 private:
  void* base_ = nullptr;
  std::size_t size_ = 0;
};

// Creates `path` atomically with `bytes` of zeros (space reserved up front, so a
// full /dev/shm is an error here and not a SIGBUS later; reserved after the
// NUMA binding, so that the pages are allocated on the bound node), lets `init` write the
// contents (the FileHeader is filled in before init runs), then links it into
// place. Fails if `path` exists.
template <class Init>
Result<Mapping> create_file(const std::string& path, FileKind kind, std::size_t bytes,
                            std::uint32_t header_bytes, mode_t mode, const MapOptions& map,
                            Init&& init);

// Opens and maps `path`, checking the FileHeader against `kind` and the layout.
Result<Mapping> open_file(const std::string& path, FileKind kind, const MapOptions& map);
// The same for a descriptor that somebody else opened (the daemon, over
// SCM_RIGHTS); `name` is for messages. Does not close `fd`.
Result<Mapping> open_fd(int fd, const std::string& name, FileKind kind, const MapOptions& map);

Outcome remove_file(const std::string& path);

// Removes the `<file>.creating.<pid>` temporaries in `dir` whose creator died
// before link()ing them into place (create_file's own cleanup never ran). The
// creator is the pid in the name, and its start time in the header when the
// header was written; a temporary whose creator lives, or may live (/proc
// hides it), stays, as do the calling process's own. Returns the paths removed.
// Called by the daemon at start and by create_file before it creates.
std::vector<std::string> sweep_abandoned_creations(const std::string& dir);

// Non-template core of create_file.
Result<Mapping> create_file_raw(const std::string& path, FileKind kind, std::size_t bytes,
                                std::uint32_t header_bytes, mode_t mode, const MapOptions& map,
                                void (*init)(std::byte*, void*), void* ctx);

template <class Init>
Result<Mapping> create_file(const std::string& path, FileKind kind, std::size_t bytes,
                            std::uint32_t header_bytes, mode_t mode, const MapOptions& map,
                            Init&& init) {
  return create_file_raw(
      path, kind, bytes, header_bytes, mode, map,
      [](std::byte* base, void* ctx) { (*static_cast<Init*>(ctx))(base); },
      const_cast<void*>(static_cast<const void*>(&init)));
}

}  // namespace shmbus::shm
