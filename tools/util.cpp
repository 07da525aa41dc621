#include "util.hpp"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <thread>

#include "control/registry.hpp"
#include "shm/file.hpp"

namespace shmbus::cli {

void fail(int code, const std::string& message) {
  throw Failure(code, message);
}

void fail(const Error& e) {
  fail(e.code == ENOENT ? kNotFound : kFailed, e.message);
}

std::string bus_dir(const Context& ctx) {
  return shm::bus_directory(ctx.bus);
}

TopicInfo describe_or_fail(const Context& ctx, std::string_view topic) {
  auto info = Topic::describe(ctx.bus, topic);
  if (info) return std::move(info).value();
  const Error& e = info.error();
  if (e.code == ENOENT)
    fail(kNotFound, "topic '" + std::string(topic) + "' not found in bus '" + ctx.bus + "' (" +
                        bus_dir(ctx) + "); list the topics with: shmbus --bus " + ctx.bus +
                        " topic list");
  fail(e);
}

void check_partition(const TopicInfo& info, std::uint32_t partition) {
  if (partition < info.options.partitions) return;
  fail(kUsage, "topic '" + info.name + "' has " + std::to_string(info.options.partitions) +
                   " partition(s): --partition must be 0.." +
                   std::to_string(info.options.partitions - 1));
}

std::vector<std::string> list_topics(const Context& ctx) {
  std::vector<std::string> names;
  const std::string dir = bus_dir(ctx);
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return names;
    fail(kFailed, "cannot read the bus directory " + dir + ": " + std::strerror(errno));
  }
  constexpr std::string_view kSuffix = ".0.log";
  while (const dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n.size() > kSuffix.size() && n.ends_with(kSuffix) && n.front() != '.')
      names.emplace_back(n.substr(0, n.size() - kSuffix.size()));
  }
  ::closedir(d);
  // With a daemon, its registry (mapped read-only) also names the topics
  // whose files are gone or damaged: listed, so that they can be seen and deleted.
  if (auto registry = control::Registry::open(control::registry_path(dir))) {
    auto records = registry->read();
    if (!records) fail(kFailed, records.error().message);
    for (const control::TopicRecord& r : *records) names.push_back(r.name);
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

const char* policy_name(Policy p) noexcept {
  switch (p) {
    case Policy::Block:
      return "block";
    case Policy::Overwrite:
      return "overwrite";
  }
  return "unknown";
}

// --- parsing ---

namespace {

bool set_why(std::string* why, std::string text) {
  if (why != nullptr) *why = std::move(text);
  return false;
}

// A non-negative decimal with an optional fraction; `rest` gets what follows.
std::optional<long double> parse_decimal(std::string_view s, std::string_view& rest) {
  std::size_t i = 0;
  long double v = 0;
  bool digits = false;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    v = v * 10 + (s[i++] - '0');
    digits = true;
  }
  if (i < s.size() && s[i] == '.') {
    long double scale = 0.1L;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, scale /= 10) {
      v += (s[i] - '0') * scale;
      digits = true;
    }
  }
  if (!digits) return std::nullopt;
  rest = s.substr(i);
  return v;
}

bool lower_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  return true;
}

// Exactly `n` digits at s[at..]; -1 if not.
int digits(std::string_view s, std::size_t at, std::size_t n) {
  if (at + n > s.size()) return -1;
  int v = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

}  // namespace

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view s, std::string* why) {
  std::string_view unit;
  auto v = parse_decimal(s, unit);
  struct Unit {
    std::string_view name;
    long double ns;
  };
  static constexpr Unit kUnits[] = {{"ns", 1},      {"us", 1e3}, {"ms", 1e6},   {"s", 1e9},
                                    {"", 1e9},      {"m", 60e9}, {"min", 60e9}, {"h", 3600e9},
                                    {"d", 86400e9}, {"sec", 1e9}};
  if (v) {
    for (const Unit& u : kUnits) {
      if (unit != u.name) continue;
      const long double ns = *v * u.ns;
      if (ns > 1e18L) break;  // ~31 years: surely a typo
      return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(ns)));
    }
  }
  set_why(why, "'" + std::string(s) + "' is not a duration: use e.g. 500ms, 1s, 2.5s, 5m, 1h");
  return std::nullopt;
}

std::optional<std::uint64_t> parse_size(std::string_view s, std::string* why) {
  std::string_view unit;
  auto v = parse_decimal(s, unit);
  struct Unit {
    std::string_view name;
    std::uint64_t bytes;
  };
  static constexpr Unit kUnits[] = {{"", 1},
                                    {"b", 1},
                                    {"k", 1ull << 10},
                                    {"kb", 1ull << 10},
                                    {"kib", 1ull << 10},
                                    {"m", 1ull << 20},
                                    {"mb", 1ull << 20},
                                    {"mib", 1ull << 20},
                                    {"g", 1ull << 30},
                                    {"gb", 1ull << 30},
                                    {"gib", 1ull << 30}};
  if (v) {
    for (const Unit& u : kUnits) {
      if (!lower_equal(unit, u.name)) continue;
      const long double bytes = *v * static_cast<long double>(u.bytes);
      if (bytes > 1e18L || bytes != std::floor(bytes)) break;
      return static_cast<std::uint64_t>(bytes);
    }
  }
  set_why(why, "'" + std::string(s) + "' is not a size: use e.g. 4096, 64KiB, 1MiB, 1GiB");
  return std::nullopt;
}

std::optional<std::int64_t> parse_time(std::string_view s, std::int64_t now, std::string* why) {
  auto bad = [&](const std::string& detail) -> std::optional<std::int64_t> {
    set_why(why, "'" + std::string(s) + "' is not a time: " + detail +
                     " (use ISO-8601 like 2026-11-25T10:00:00Z, or -5m for 5 minutes ago)");
    return std::nullopt;
  };
  if (s == "now") return now;
  if (!s.empty() && s.front() == '-') {
    std::string ignored;
    auto d = parse_duration(s.substr(1), &ignored);
    if (!d) return bad("a relative time is a minus sign and a duration such as 30s, 5m, 2h");
    return now - d->count();
  }
  // YYYY-MM-DD[(T| )HH:MM[:SS[.frac]]][Z|(+|-)HH[:]MM]
  const int year = digits(s, 0, 4), mon = digits(s, 5, 2), day = digits(s, 8, 2);
  if (year < 0 || mon < 1 || mon > 12 || day < 1 || day > 31 || s[4] != '-' || s[7] != '-')
    return bad("expected a date YYYY-MM-DD first");
  int hour = 0, min = 0, sec = 0;
  std::int64_t frac_ns = 0;
  std::size_t i = 10;
  if (i < s.size() && (s[i] == 'T' || s[i] == 't' || s[i] == ' ')) {
    hour = digits(s, i + 1, 2);
    min = digits(s, i + 4, 2);
    if (hour < 0 || hour > 23 || min < 0 || min > 59 || s[i + 3] != ':')
      return bad("expected a time HH:MM[:SS[.fraction]] after the date");
    i += 6;
    if (i < s.size() && s[i] == ':') {
      sec = digits(s, i + 1, 2);
      if (sec < 0 || sec > 60) return bad("the seconds must be two digits, 00..60");
      i += 3;
      if (i < s.size() && (s[i] == '.' || s[i] == ',')) {
        std::int64_t scale = 100'000'000;
        std::size_t n = 0;
        for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++n) {
          if (scale > 0) frac_ns += (s[i] - '0') * scale;
          scale /= 10;
        }
        if (n == 0) return bad("a fraction needs digits after the point");
      }
    }
  }
  std::int64_t offset_s = 0;
  if (i < s.size()) {
    if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == s.size()) {
      ++i;
    } else if (s[i] == '+' || s[i] == '-') {
      const int sign = s[i] == '-' ? -1 : 1;
      const int oh = digits(s, i + 1, 2);
      std::size_t j = i + 3;
      if (j < s.size() && s[j] == ':') ++j;
      const int om = j < s.size() ? digits(s, j, 2) : 0;
      if (oh < 0 || oh > 23 || om < 0 || om > 59) return bad("the zone must be Z or +HH:MM");
      i = j < s.size() ? j + 2 : j;
      offset_s = sign * (oh * 3600 + om * 60);
    }
    if (i != s.size()) return bad("unexpected '" + std::string(s.substr(i)) + "'");
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  const std::time_t t = ::timegm(&tm);
  return (static_cast<std::int64_t>(t) - offset_s) * 1'000'000'000LL + frac_ns;
}

// --- formatting ---

std::int64_t now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

std::string format_time(std::int64_t ns) {
  std::int64_t sec = ns / 1'000'000'000LL;
  std::int64_t frac = ns % 1'000'000'000LL;
  if (frac < 0) {
    frac += 1'000'000'000LL;
    --sec;
  }
  const auto t = static_cast<std::time_t>(sec);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char b[64];
  std::snprintf(b, sizeof b, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return b;
}

std::string human_bytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char b[32];
  if (u == 0)
    std::snprintf(b, sizeof b, "%.0f B", bytes);
  else
    std::snprintf(b, sizeof b, "%.1f %s", bytes, kUnits[u]);
  return b;
}

namespace {

// Length of the valid UTF-8 sequence at s[i] (no overlongs, surrogates or
// code points past U+10FFFF), or 0. `cp` gets the code point.
std::size_t utf8_sequence(std::string_view s, std::size_t i, std::uint32_t& cp) noexcept {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t n;
  std::uint32_t min;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xe0) == 0xc0) {
    n = 2;
    cp = b0 & 0x1f;
    min = 0x80;
  } else if ((b0 & 0xf0) == 0xe0) {
    n = 3;
    cp = b0 & 0x0f;
    min = 0x800;
  } else if ((b0 & 0xf8) == 0xf0) {
    n = 4;
    cp = b0 & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

}  // namespace

bool valid_utf8(std::string_view s) noexcept {
  std::uint32_t cp;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence(s, i, cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char hex[8];
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::uint32_t cp = 0;
    const std::size_t n = c >= 0x80 ? utf8_sequence(s, i, cp) : 1;
    if (c >= 0x80 && n > 1 && cp >= 0xa0) {  // printable non-ASCII (C1 controls are escaped)
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out += static_cast<char>(c);
        } else {
          std::snprintf(hex, sizeof hex, "\\x%02x", c);
          out += hex;
        }
    }
    ++i;
  }
  return out;
}

std::string base64(std::string_view s) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((s.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto byte = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(s[k]));
  };
  for (; i + 3 <= s.size(); i += 3) {
    const std::uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (const std::size_t left = s.size() - i; left > 0) {
    const std::uint32_t v = byte(i) << 16 | (left == 2 ? byte(i + 1) << 8 : 0);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += left == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// --- process ---

namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);  // async-signal-safe

extern "C" void on_stop_signal(int) {
  g_stop.store(true, std::memory_order_relaxed);  // relaxed: only the flag itself is shared
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR and we look at the flag
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

bool stop_requested() noexcept {
  return g_stop.load(std::memory_order_relaxed);
}

void sleep_for(std::chrono::nanoseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (!stop_requested()) {
    const auto left = end - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return;
    // Short slices: a signal that lands between the check and the sleep
    // delays the stop by at most one slice.
    std::this_thread::sleep_for(
        std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(50)));
  }
}

bool write_stdout(std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(STDOUT_FILENO, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE) return false;
      fail(kFailed, std::string("cannot write to stdout: ") + std::strerror(errno));
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace shmbus::cli
