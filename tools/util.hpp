// tools/util.hpp — pieces the shmbus subcommands share: exit codes and the one
// error line, parsing of durations, sizes and times, and the escaping and
// encoding of message bytes for a terminal or JSON.
//
// Not thread-safe unless a function says so; the tool is single-threaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/status.hpp"
#include "shmbus/topic.hpp"

namespace shmbus::cli {

// Documented in the top-level --help footer.
enum Exit : int {
  kOk = 0,
  kFailed = 1,    // the operation failed; the message says what to do
  kUsage = 2,     // bad command line
  kNotFound = 3,  // no such topic (or partition file)
};

// Thrown by a subcommand to end the program: main prints "shmbus: <what()>"
// on stderr and exits with `code`.
class Failure : public std::runtime_error {
 public:
  Failure(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

[[noreturn]] void fail(int code, const std::string& message);
// kNotFound for ENOENT, else kFailed; the message is the library's, which
// names the file or option.
[[noreturn]] void fail(const Error& e);

// What every subcommand gets: the global options.
struct Context {
  std::string bus = "default";
};

// The bus directory (SHMBUS_SHM_ROOT aware).
std::string bus_dir(const Context& ctx);
// Topic::describe, failing with kNotFound ("topic 'x' not found in bus 'y' ...")
// when the topic does not exist.
TopicInfo describe_or_fail(const Context& ctx, std::string_view topic);
// Fails with kUsage unless partition < info.partitions.
void check_partition(const TopicInfo& info, std::uint32_t partition);
// Topic names in the bus directory (files named <topic>.0.log), and those
// its daemon's registry lists (when there is one), sorted; empty when the
// directory does not exist.
std::vector<std::string> list_topics(const Context& ctx);

const char* policy_name(Policy p) noexcept;

// --- parsing: nullopt (with `why` set) on bad input ---

// "500ms", "1s", "1.5s", "2m", "1h", "1d", "250us", "100ns"; a bare number is seconds.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s, std::string* why);
// "4096", "64K", "64KiB", "1M", "1MiB", "1G": binary multiples.
std::optional<std::uint64_t> parse_size(std::string_view s, std::string* why);
// "now", "-5m" (relative to now_ns, any parse_duration unit), or ISO-8601
// "2026-11-25", "2026-11-25T10:00", "2026-11-25T10:00:00.123456789" with an
// optional zone "Z", "+02:00", "-0500" (none: UTC, as tail prints times).
// Returns ns since the epoch (CLOCK_REALTIME).
std::optional<std::int64_t> parse_time(std::string_view s, std::int64_t now_ns, std::string* why);
// Unsigned decimal, the whole string.
std::optional<std::uint64_t> parse_u64(std::string_view s);

// --- formatting ---

std::int64_t now_ns() noexcept;
// "2026-11-25T10:00:00.123456789Z" (UTC, always 9 fraction digits).
std::string format_time(std::int64_t ns);
// "4.0 MiB", "512 B".
std::string human_bytes(double bytes);
// Printable ASCII and valid printable UTF-8 pass; \" \\ \n \r \t and \xNN for the rest.
std::string escape(std::string_view bytes);
bool valid_utf8(std::string_view bytes) noexcept;
std::string base64(std::string_view bytes);

// --- process ---

// SIGINT, SIGTERM and SIGHUP set a flag (no SA_RESTART, so blocking reads and
// sleeps return early) instead of killing the process: commands that hold a
// producer or consumer slot leave it cleanly. SIGPIPE is ignored; writes
// report EPIPE instead.
void install_stop_handlers();
bool stop_requested() noexcept;
// Sleeps up to `d`, returning early on a stop request.
void sleep_for(std::chrono::nanoseconds d);

// Writes all of `s` to stdout (unbuffered write(2) loop); false when stdout
// is closed (EPIPE), e.g. `shmbus tail t | head`. Other errors fail.
bool write_stdout(std::string_view s);

}  // namespace shmbus::cli
