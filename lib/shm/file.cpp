#include "shm/file.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <utility>

#include "shm/placement.hpp"
#include "shm/process.hpp"

namespace shmbus::shm {
Error sys_error(int err, const std::string& what) {
  return Error{err, what + ": " + std::strerror(err)};
}

namespace {

std::string hex(std::uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%016llx", static_cast<unsigned long long>(v));
  return b;
}

// Maps `fd`; `reserve` (creation only) binds the pages to a node and then
// allocates them, before anything touches them.
Result<Mapping> map_fd(int fd, const std::string& path, std::size_t bytes, const MapOptions& opt,
                       bool reserve = false) {
  int prot = PROT_READ | (opt.writable ? PROT_WRITE : 0);
  int flags = MAP_SHARED | (opt.prefault && !reserve ? MAP_POPULATE : 0);
  void* base = ::mmap(nullptr, bytes, prot, flags, fd, 0);
  if (base == MAP_FAILED) return sys_error(errno, "mmap of " + path);
  Mapping m(base, bytes);
  if (reserve) {
    if (opt.numa_node >= 0) {
      auto topo = Topology::host();
      if (!topo) return topo.error();
      if (auto bound = topo->bind_memory(base, bytes, opt.numa_node); !bound) return bound.error();
    }
    if (int err = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)); err != 0)
      return sys_error(err, "cannot reserve " + std::to_string(bytes) + " bytes for " + path +
                                " (is /dev/shm full? see df -h /dev/shm)");
    if (opt.prefault && ::madvise(base, bytes, MADV_POPULATE_WRITE) != 0) {
      if (errno != EINVAL) return sys_error(errno, "cannot prefault " + path);
      // Kernels before 5.14: touch every page (the pages exist; this maps them).
      const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
      for (std::size_t off = 0; off < bytes; off += page)
        static_cast<volatile std::byte*>(base)[off] = std::byte{0};
    }
  }
  if (opt.huge_pages && ::madvise(base, bytes, MADV_HUGEPAGE) != 0)
    return sys_error(errno, "madvise(MADV_HUGEPAGE) on " + path +
                                " (is transparent_hugepage/shmem_enabled 'advise' or 'always'?)");
  if (opt.lock && ::mlock(base, bytes) != 0)
    return sys_error(errno, "mlock of " + std::to_string(bytes) + " bytes of " + path +
                                " (raise RLIMIT_MEMLOCK, e.g. ulimit -l unlimited)");
  return m;
}

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

}  // namespace

const char* to_string(FileKind k) noexcept {
  switch (k) {
    case FileKind::Ring:
      return "ring";
    case FileKind::Cursors:
      return "cursors";
    case FileKind::Registry:
      return "registry";
  }
  return "unknown";
}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (base_ != nullptr) ::munmap(base_, size_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = o.size_;
  }
  return *this;
}

Mapping::~Mapping() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

std::string bus_directory(std::string_view bus) {
  const char* root = std::getenv("SHMBUS_SHM_ROOT");
  std::string dir = root != nullptr && *root != '\0' ? root : "/dev/shm/shmbus";
  return dir + "/" + std::string(bus);
}

Outcome make_directory(const std::string& path) {
  if (path.empty()) return Error{EINVAL, "empty directory path"};
  for (std::size_t i = 1; i <= path.size(); ++i) {
    if (i != path.size() && path[i] != '/') continue;
    std::string part = path.substr(0, i);
    if (::mkdir(part.c_str(), 0750) == 0) {
      ::chmod(part.c_str(), 0750);  // the umask must not widen or narrow it
    } else if (errno != EEXIST) {
      return sys_error(errno, "cannot create directory " + part);
    }
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Error{ENOTDIR, path + " exists and is not a directory"};
  return Done{};
}

Result<Mapping> create_file_raw(const std::string& path, FileKind kind, std::size_t bytes,
                                std::uint32_t header_bytes, mode_t mode, const MapOptions& map,
                                void (*init)(std::byte*, void*), void* ctx) {
  if ((mode & S_IWOTH) != 0)
    return Error{EPERM, path + ": mode " + std::to_string(mode) +
                            " is world-writable; shmbus files never are"};
  if (bytes < sizeof(FileHeader) || header_bytes > bytes)
    return Error{EINVAL, path + ": size " + std::to_string(bytes) + " is too small"};
  if (auto made = make_directory(parent_of(path)); !made) return made.error();

  (void)sweep_abandoned_creations(parent_of(path));  // a dead creator's, perhaps of this very name
  std::string tmp = path + ".creating." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return sys_error(errno, "cannot create " + tmp);
  struct Cleanup {
    int fd;
    const std::string& tmp;
    ~Cleanup() {
      ::close(fd);
      ::unlink(tmp.c_str());
    }
  } cleanup{fd, tmp};
  if (::fchmod(fd, mode) != 0) return sys_error(errno, "chmod of " + tmp);
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) return sys_error(errno, "resize of " + tmp);
  MapOptions rw = map;
  rw.writable = true;
  // Every page is reserved now: a full /dev/shm fails here, not with a SIGBUS in a producer.
  auto mapped = map_fd(fd, path, bytes, rw, /*reserve=*/true);
  if (!mapped) return mapped.error();

  auto* h = reinterpret_cast<FileHeader*>(mapped->data());
  h->magic = kMagic;
  h->layout_version = kLayoutVersion;
  h->kind = kind;
  h->file_bytes = bytes;
  h->header_bytes = header_bytes;
  h->creator_pid = self().pid;
  h->creator_start = self().start_time;
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  h->created_ns = now.tv_sec * 1'000'000'000LL + now.tv_nsec;
  init(mapped->data(), ctx);

  if (::link(tmp.c_str(), path.c_str()) != 0) {
    if (errno == EEXIST) return Error{EEXIST, path + " already exists"};
    return sys_error(errno, "cannot create " + path);
  }
  return std::move(mapped).value();
}

Result<Mapping> open_file(const std::string& path, FileKind kind, const MapOptions& map) {
  int fd = ::open(path.c_str(), (map.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Error{ENOENT, path + " does not exist"};
    if (errno == EACCES)
      return Error{EACCES, "permission denied opening " + path +
                               (map.writable ? " for writing" : " for reading") +
                               ": the topic's owner, group and mode do not grant it"};
    return sys_error(errno, "cannot open " + path);
  }
  auto mapped = open_fd(fd, path, kind, map);
  ::close(fd);
  return mapped;
}

Result<Mapping> open_fd(int fd, const std::string& path, FileKind kind, const MapOptions& map) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return sys_error(errno, "cannot stat " + path);
  auto size = static_cast<std::size_t>(st.st_size);
  if (size < sizeof(FileHeader))
    return Error{EPROTO, path + " is not a shmbus file: " + std::to_string(size) +
                             " bytes is too small for a header"};
  auto mapped = map_fd(fd, path, size, map);
  if (!mapped) return mapped.error();
  const FileHeader& h = mapped->header();
  if (h.magic != kMagic)
    return Error{EPROTO, path + " is not a shmbus file (magic " + hex(h.magic) + ", expected " +
                             hex(kMagic) + ")"};
  if (h.layout_version != kLayoutVersion)
    return Error{EPROTO, path + " has layout version " + std::to_string(h.layout_version) +
                             "; this library reads version " + std::to_string(kLayoutVersion) +
                             " (recreate the topic, or use a matching library)"};
  if (h.kind != kind)
    return Error{EPROTO, path + " is a shmbus " + to_string(h.kind) + " file, expected a " +
                             to_string(kind) + " file"};
  if (h.file_bytes != size || h.header_bytes > size)
    return Error{EPROTO, path + " is damaged: header says " + std::to_string(h.file_bytes) +
                             " bytes, the file has " + std::to_string(size)};
  return std::move(mapped).value();
}

std::vector<std::string> sweep_abandoned_creations(const std::string& dir) {
  std::vector<std::string> removed;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return removed;
  constexpr std::string_view kTag = ".creating.";
  std::vector<std::pair<std::string, std::uint32_t>> candidates;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view n = e->d_name;
    const std::size_t at = n.rfind(kTag);
    if (at == std::string_view::npos || at == 0) continue;
    const std::string_view digits = n.substr(at + kTag.size());
    if (digits.empty() || digits.size() > 10) continue;
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    const std::uint64_t pid = std::strtoull(std::string(digits).c_str(), nullptr, 10);
    if (pid == 0 || pid > INT32_MAX) continue;
    candidates.emplace_back(std::string(n), static_cast<std::uint32_t>(pid));
  }
  ::closedir(d);
  for (const auto& [name, pid] : candidates) {
    const std::string path = dir + "/" + name;
    // The creator's identity: the pid in the name, its start time from the
    // header if the creator got as far as writing it (zeros before that).
    ProcessId creator{pid, 0};
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;  // gone already, or not ours to judge
    FileHeader h{};
    if (::pread(fd, &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h) && h.magic == kMagic &&
        h.creator_pid == pid)
      creator.start_time = h.creator_start;
    ::close(fd);
    if (pid == self().pid && (creator.start_time == 0 || creator.start_time == self().start_time))
      continue;  // perhaps another thread of ours, creating right now
    if (creator.start_time == 0) creator.start_time = start_time_of(static_cast<pid_t>(pid));
    if (alive(creator)) continue;
    if (::unlink(path.c_str()) == 0) removed.push_back(path);
  }
  return removed;
}

Outcome remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return sys_error(errno, "cannot remove " + path);
  return Done{};
}

}  // namespace shmbus::shm
