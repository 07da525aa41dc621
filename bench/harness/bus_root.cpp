#include "bus_root.hpp"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "failure.hpp"

namespace shmbus::bench {
namespace {

std::string g_root;

void remove_stale_roots(const std::string& prefix) noexcept {
  std::error_code ec;
  const std::string lead = prefix + ".";
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with(lead)) continue;
    const std::size_t dot = name.find('.', lead.size());
    if (dot == std::string::npos || dot == lead.size()) continue;
    const std::string pid_text = name.substr(lead.size(), dot - lead.size());
    if (pid_text.find_first_not_of("0123456789") != std::string::npos || pid_text.size() > 9)
      continue;
    const auto pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    std::error_code rm;
    std::filesystem::remove_all(e.path(), rm);
  }
}

}  // namespace

std::string make_root(const std::string& prefix) {
  remove_stale_roots(prefix);
  std::string templ = format("/dev/shm/%s.%d.XXXXXX", prefix.c_str(), static_cast<int>(::getpid()));
  if (::mkdtemp(templ.data()) == nullptr)
    fail(format("cannot create a private bus root under /dev/shm: %s", std::strerror(errno)));
  g_root = templ;
  if (::setenv("SHMBUS_SHM_ROOT", g_root.c_str(), 1) != 0)
    fail(format("setenv SHMBUS_SHM_ROOT: %s", std::strerror(errno)));
  return g_root;
}

const std::string& root() {
  return g_root;
}

void remove_root() noexcept {
  if (g_root.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(g_root, ec);
  if (ec) std::fprintf(stderr, "cannot remove %s: %s\n", g_root.c_str(), ec.message().c_str());
  g_root.clear();
}

}  // namespace shmbus::bench
