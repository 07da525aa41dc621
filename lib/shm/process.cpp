#include "shm/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shmbus::shm {
namespace {

// Reads /proc/<pid>/stat; returns false when the process does not exist.
// The command name (field 2) may contain spaces and ')', so parsing starts
// after the last ')'.
bool read_stat(pid_t pid, char* state, std::uint64_t* start) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] == '\0') return false;
  p += 2;  // field 3, the state
  *state = *p;
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  *start = std::strtoull(p, nullptr, 10);
  return true;
}

}  // namespace

std::uint64_t start_time_of(pid_t pid) noexcept {
  char state = 0;
  std::uint64_t start = 0;
  return read_stat(pid, &state, &start) ? start : 0;
}

ProcessId self() noexcept {
  thread_local ProcessId cached{};
  auto pid = static_cast<std::uint32_t>(::getpid());
  if (cached.pid != pid) cached = {pid, start_time_of(static_cast<pid_t>(pid))};
  return cached;
}

bool alive(const ProcessId& id) noexcept {
  if (id.pid == 0) return false;
  // Only ESRCH proves death. EPERM (another user's process) is alive.
  if (::kill(static_cast<pid_t>(id.pid), 0) != 0 && errno == ESRCH) return false;
  char state = 0;
  std::uint64_t start = 0;
  // /proc may hide other users' processes (hidepid): then the pid lives.
  if (!read_stat(static_cast<pid_t>(id.pid), &state, &start)) return true;
  return state != 'Z' && state != 'X' && start == id.start_time;
}

}  // namespace shmbus::shm
