// daemon/main.cpp — shmbusd, the supervisor of a shmbus bus.
//
// Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed to start or to serve,
// 2 bad command line or configuration (nothing was started).
#include <syslog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "config.hpp"
#include "server.hpp"

namespace {

constexpr const char* kUsage =
    "usage: shmbusd [--config FILE] [--bus NAME] [--socket PATH] [--data-dir DIR]\n"
    "               [--foreground]\n"
    "\n"
    "The shmbus supervisor daemon: creates topics, checks ACLs, hands out the\n"
    "shared-memory file descriptors and cleans up after clients that die.\n"
    "\n"
    "  --config FILE   TOML configuration (bus, socket, topics with ACLs);\n"
    "                  without it: bus 'default' and no topics\n"
    "  --bus NAME      bus name (overrides the configuration)\n"
    "  --socket PATH   control socket (default $XDG_RUNTIME_DIR/shmbus/<bus>.sock,\n"
    "                  or /run/shmbus/<bus>.sock)\n"
    "  --data-dir DIR  durable topics' segment files (default /var/lib/shmbus/<bus>\n"
    "                  as root, else $XDG_STATE_HOME/shmbus/<bus>)\n"
    "  --max-topic-bytes N   refuse topics larger than N bytes of ring\n"
    "  --foreground    stay in the foreground and log to stderr (else: daemonize, syslog)\n"
    "\n"
    "Environment: SHMBUS_SHM_ROOT moves the shared memory root (/dev/shm/shmbus).\n"
    "Exit codes: 0 stopped by a signal, 1 runtime failure, 2 bad usage or configuration.\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace shmbus::daemon;
  std::string config_path, bus, socket, data_dir, max_bytes;
  bool foreground = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "shmbusd: %s needs a value\n%s", a.c_str(), kUsage);
        std::exit(2);
      }
      out = argv[++i];
    };
    if (a == "--config")
      value(config_path);
    else if (a == "--bus")
      value(bus);
    else if (a == "--socket")
      value(socket);
    else if (a == "--data-dir")
      value(data_dir);
    else if (a == "--max-topic-bytes")
      value(max_bytes);
    else if (a == "--foreground" || a == "-f")
      foreground = true;
    else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "shmbusd: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }

  Config config;
  if (!config_path.empty()) {
    auto loaded = load_config(config_path);
    if (!loaded) {
      std::fprintf(stderr, "shmbusd: bad configuration: %s\n", loaded.error().message.c_str());
      return 2;
    }
    config = std::move(loaded.value());
  }
  if (!bus.empty()) config.bus = bus;
  if (!socket.empty()) config.socket = socket;
  if (!data_dir.empty()) config.data_dir = data_dir;
  if (config.data_dir.empty()) config.data_dir = default_data_dir(config.bus);
  // Absolute: consumers follow a link to it from the bus directory.
  config.data_dir = std::filesystem::absolute(config.data_dir).lexically_normal().string();
  if (!max_bytes.empty()) {
    char* end = nullptr;
    config.max_topic_bytes = std::strtoull(max_bytes.c_str(), &end, 10);
    if (end == max_bytes.c_str() || *end != '\0' || config.max_topic_bytes == 0) {
      std::fprintf(stderr, "shmbusd: --max-topic-bytes '%s' is not a positive number\n",
                   max_bytes.c_str());
      return 2;
    }
  }

  log_to_stderr(true);
  Server server(std::move(config));
  if (auto ok = server.start(); !ok) {
    logf("error", "cannot start: " + ok.error().message);
    return 1;
  }
  if (!foreground) {
    if (::daemon(0, 0) != 0) {
      logf("error", std::string("daemon: ") + std::strerror(errno));
      return 1;
    }
    ::openlog("shmbusd", LOG_PID, LOG_DAEMON);
    log_to_stderr(false);
  }
  logf("info", "ready");
  return server.run();
}
