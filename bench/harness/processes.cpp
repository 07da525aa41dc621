#include "processes.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "failure.hpp"
#include "shmbus/placement.hpp"

namespace shmbus::bench {
namespace {

using Clock = std::chrono::steady_clock;

sigset_t g_wait_signals;
void no_op_handler(int) {}

[[noreturn]] void child_main(const Role& role, int index, ProcessErrors* errors, int ready_fd,
                             int go_fd) {
  ::signal(SIGCHLD, SIG_DFL);
  ::sigprocmask(SIG_UNBLOCK, &g_wait_signals, nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  auto report = [&](const std::string& what) {
    std::snprintf(errors->error[index], sizeof errors->error[index], "process %s (CPU %d): %s",
                  role.name, role.cpu, what.c_str());
    errors->failed[index] = 1;
    ::_exit(2);
  };
  try {
    if (auto ok = shmbus::pin_thread_to_cpu(role.cpu); !ok) report(ok.error().message);
    role.body([&] {
      char b = 1;
      if (::write(ready_fd, &b, 1) != 1) report("ready pipe: " + std::string(strerror(errno)));
      ::close(ready_fd);
      ssize_t n;
      do n = ::read(go_fd, &b, 1);
      while (n < 0 && errno == EINTR);
      ::close(go_fd);
    });
  } catch (const std::exception& e) {
    report(e.what());
  }
  ::_exit(0);
}

}  // namespace

void setup_signals() {
  sigemptyset(&g_wait_signals);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&g_wait_signals, s);
  struct sigaction sa {};
  sa.sa_handler = no_op_handler;  // SIGCHLD must not be discarded as "ignored"
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGCHLD, &sa, nullptr);
  ::sigprocmask(SIG_BLOCK, &g_wait_signals, nullptr);
}

void check_interrupted() {
  const timespec zero{};
  sigset_t term;
  sigemptyset(&term);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&term, s);
  const int sig = ::sigtimedwait(&term, nullptr, &zero);
  if (sig > 0) fail(format("interrupted by signal %d (%s)", sig, strsignal(sig)));
}

void run_processes(int timeout_s, ProcessErrors* errors, const std::vector<Role>& roles) {
  if (roles.size() > static_cast<std::size_t>(kMaxProcs))
    fail(format("at most %d processes per test", kMaxProcs));
  check_interrupted();
  std::memset(errors, 0, sizeof *errors);
  int ready[2], go[2];
  if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0)
    fail(format("pipe: %s", std::strerror(errno)));
  std::fflush(nullptr);  // children must not inherit unwritten output
  std::vector<pid_t> pids;
  std::vector<bool> exited;
  for (std::size_t i = 0; i < roles.size(); ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int e = errno;
      for (pid_t p : pids) ::kill(p, SIGKILL);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      fail(format("fork: %s", std::strerror(e)));
    }
    if (pid == 0) {
      ::close(ready[0]);
      ::close(go[1]);
      child_main(roles[i], static_cast<int>(i), errors, ready[1], go[0]);
    }
    pids.push_back(pid);
    exited.push_back(false);
  }
  ::close(ready[1]);
  ::close(go[0]);
  int go_fd = go[1];

  auto kill_all = [&] {
    for (std::size_t i = 0; i < pids.size(); ++i)
      if (!exited[i]) ::kill(pids[i], SIGKILL);
    for (std::size_t i = 0; i < pids.size(); ++i)
      if (!exited[i]) ::waitpid(pids[i], nullptr, 0);
    ::close(ready[0]);
    if (go_fd >= 0) ::close(go_fd);
  };
  // Reaps exited children; returns an error text if one failed.
  auto reap = [&]() -> std::string {
    for (std::size_t i = 0; i < pids.size(); ++i) {
      if (exited[i]) continue;
      int st = 0;
      const pid_t r = ::waitpid(pids[i], &st, WNOHANG);
      if (r != pids[i]) continue;
      exited[i] = true;
      if (errors->failed[i]) return errors->error[i];
      if (WIFSIGNALED(st))
        return format("process %s (CPU %d) was killed by signal %d (%s)", roles[i].name,
                      roles[i].cpu, WTERMSIG(st), strsignal(WTERMSIG(st)));
      if (WEXITSTATUS(st) != 0)
        return format("process %s (CPU %d) exited with status %d", roles[i].name, roles[i].cpu,
                      WEXITSTATUS(st));
    }
    return {};
  };
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  auto left = [&] {
    return std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
  };

  // Set-up: every child writes one byte to `ready`.
  std::size_t ready_count = 0;
  while (ready_count < roles.size()) {
    pollfd pfd{ready[0], POLLIN, 0};
    const int n = ::poll(&pfd, 1, 10);
    if (n > 0) {
      char buf[8];
      const ssize_t got = ::read(ready[0], buf, sizeof buf);
      if (got > 0) ready_count += static_cast<std::size_t>(got);
    }
    if (std::string e = reap(); !e.empty()) {
      kill_all();
      fail(e);
    }
    if (ready_count < roles.size() &&
        std::any_of(exited.begin(), exited.end(), [](bool x) { return x; })) {
      kill_all();
      fail("a process exited before it was ready");
    }
    if (left() == 0) {
      kill_all();
      fail(format("set-up did not finish within %d s", timeout_s));
    }
    try {
      check_interrupted();
    } catch (...) {
      kill_all();
      throw;
    }
  }
  ::close(go_fd);  // go: every child's read() returns
  go_fd = -1;

  // Run: sleep in sigtimedwait so as not to disturb the pinned CPUs.
  while (std::find(exited.begin(), exited.end(), false) != exited.end()) {
    const std::int64_t ms = left();
    if (ms == 0) {
      kill_all();
      fail(format("test did not finish within %d s (raise --timeout?)", timeout_s));
    }
    const timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1'000'000};
    const int sig = ::sigtimedwait(&g_wait_signals, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      kill_all();
      fail(format("interrupted by signal %d (%s)", sig, strsignal(sig)));
    }
    if (std::string e = reap(); !e.empty()) {
      kill_all();
      fail(e);
    }
  }
  ::close(ready[0]);
}

void preflight(int timeout_s, ProcessErrors* errors, const std::vector<int>& cpus) {
  static const char* const kNames[kMaxProcs] = {"A", "B", "C"};
  std::vector<Role> roles;
  auto nothing = [](const std::function<void()>& ready) { ready(); };
  for (std::size_t i = 0; i < cpus.size() && i < static_cast<std::size_t>(kMaxProcs); ++i)
    roles.push_back({kNames[i], cpus[i], nothing});
  run_processes(timeout_s, errors, roles);
}

}  // namespace shmbus::bench
