// shmbus tail TOPIC: print a partition's messages as text, a hexdump or JSON lines.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "commands.hpp"
#include "header.hpp"
#include "read_from.hpp"
#include "shmbus/consumer.hpp"

namespace shmbus::cli {
namespace {

using nlohmann::json;

enum class Format { Text, Hex, Json };

std::string_view as_chars(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// position=P time=T [key="K"] [headers={"n"="v", ...}]
void append_fields(std::string& out, const Message& m) {
  out += "position=" + std::to_string(m.position) + " time=";
  out += m.timestamp_ns != 0 ? format_time(m.timestamp_ns) : std::string("-");
  if (!m.key.empty()) out += " key=\"" + escape(m.key) + "\"";
  if (!m.properties.empty()) {
    out += " headers={";
    bool first = true;
    for (Property p : m.properties) {
      if (!first) out += ", ";
      first = false;
      out += header_text(p);
    }
    out += "}";
  }
}

// hexdump -C: offset, 16 bytes in two groups of 8, then the printable ASCII.
void append_hexdump(std::string& out, std::string_view b) {
  char cell[32];
  for (std::size_t off = 0; off < b.size(); off += 16) {
    std::snprintf(cell, sizeof cell, "%08zx ", off);
    out += cell;
    for (std::size_t i = 0; i < 16; ++i) {
      if (i == 8) out += ' ';
      if (off + i < b.size()) {
        std::snprintf(cell, sizeof cell, " %02x", static_cast<unsigned char>(b[off + i]));
        out += cell;
      } else {
        out += "   ";
      }
    }
    out += "  |";
    for (std::size_t i = off; i < std::min(b.size(), off + 16); ++i) {
      const auto c = static_cast<unsigned char>(b[i]);
      out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '.';
    }
    out += "|\n";
  }
}

// Strings from shared memory may be any bytes; JSON needs UTF-8.
json json_string(std::string_view s) {
  return valid_utf8(s) ? json(std::string(s)) : json(escape(s));
}

void append_json(std::string& out, const Message& m, std::uint32_t partition) {
  json j = {{"position", m.position}, {"partition", partition}, {"timestamp_ns", m.timestamp_ns}};
  j["time"] = m.timestamp_ns != 0 ? json(format_time(m.timestamp_ns)) : json(nullptr);
  j["key"] = m.key.empty() ? json(nullptr) : json_string(m.key);
  json headers = json::object();
  for (Property p : m.properties) {
    const std::string name = valid_utf8(p.name) ? std::string(p.name) : escape(p.name);
    if (!headers.contains(name)) headers[name] = header_json(p.value);  // the first of duplicates
  }
  j["headers"] = std::move(headers);
  const std::string_view payload = as_chars(m.payload);
  if (valid_utf8(payload))
    j["payload"] = std::string(payload);
  else
    j["payload_base64"] = base64(payload);
  out += j.dump();
  out += '\n';
}

}  // namespace

void run_tail(const Context& ctx, const TailOptions& o) {
  const Format format = o.format == "hex"    ? Format::Hex
                        : o.format == "json" ? Format::Json
                                             : Format::Text;
  const TopicInfo info = describe_or_fail(ctx, o.topic);
  check_partition(info, o.partition);

  ConsumerOptions co;
  co.partition = o.partition;
  co.wait = WaitStrategy::Futex;  // a tool: sleep, do not burn a core
  co.prefault = false;
  co.gating = o.gating || !o.name.empty();
  co.name = o.name;
  const std::string from = o.from.empty() ? (o.follow ? "end" : "beginning") : o.from;
  ReadFrom start = open_from(ctx, o.topic, co, from);
  Consumer consumer = std::move(start.consumer);
  std::optional<std::int64_t>& since = start.since;

  // Without --follow, stop at the tail as it is now, even if producers go on.
  const std::uint64_t end = describe_or_fail(ctx, o.topic).partitions[o.partition].tail;
  std::uint64_t printed = 0;
  std::uint64_t unstamped = 0;  // messages without a timestamp that --from TIME skipped
  static constexpr const char* kUnstamped =
      "messages without a timestamp (their producers opened with timestamps = false) cannot "
      "be placed in time and are skipped by --from TIME";
  const std::string where = "topic '" + o.topic + "' partition " + std::to_string(o.partition);
  std::string out;
  auto handler = [&](const Message& m) {
    if (since) {
      if (m.timestamp_ns == 0 && ++unstamped == 1 && o.follow)
        std::fprintf(stderr, "shmbus: %s: %s\n", where.c_str(), kUnstamped);
      if (m.timestamp_ns < *since) return;
      since.reset();  // from the first match on, print everything (producers' clocks may differ)
    }
    switch (format) {
      case Format::Text:
        append_fields(out, m);
        out += " payload=\"" + escape(as_chars(m.payload)) + "\"\n";
        break;
      case Format::Hex:
        append_fields(out, m);
        out += " length=" + std::to_string(m.payload.size()) + "\n";
        append_hexdump(out, as_chars(m.payload));
        break;
      case Format::Json:
        append_json(out, m, o.partition);
        break;
    }
    ++printed;
  };

  // A frame below `end` that stays uncommitted: say so instead of waiting forever.
  StuckWatch watch(consumer.position());
  while (!stop_requested()) {
    if (o.count != 0 && printed >= o.count) break;
    if (!o.follow && consumer.position() >= end) break;
    const auto max = static_cast<std::uint32_t>(
        o.count == 0 ? 256 : std::min<std::uint64_t>(256, o.count - printed));
    const PollResult r = consumer.poll_wait(handler, max, std::chrono::milliseconds(200));
    if (!out.empty()) {
      if (!write_stdout(out)) return;  // stdout closed (| head): done
      out.clear();
    }
    const std::uint64_t at = consumer.position();
    const bool stuck = watch.stuck(at);
    switch (r.status) {
      case Status::Ok:
        break;
      case Status::Timeout:
        if (at < end && stuck)
          fail(kFailed, where + ": nothing is committed at position " + std::to_string(at) +
                            " although the tail is past it: " +
                            "a live producer is still writing it (stopped, or in a "
                            "debugger?); readers go past what a dead producer left");
        break;
      case Status::Lagged: {
        const LostRange lost = consumer.lost();
        std::fprintf(stderr,
                     "shmbus: %s: positions [%llu, %llu) were overwritten before tail read "
                     "them; continuing at %llu\n",
                     where.c_str(), static_cast<unsigned long long>(lost.from),
                     static_cast<unsigned long long>(lost.to),
                     static_cast<unsigned long long>(lost.to));
        break;
      }
      case Status::Corrupt:
        fail(kFailed, where + ": the frame at position " + std::to_string(consumer.position()) +
                          " is corrupt (a process with write access wrote garbage); skip it "
                          "with --from and a later position, or recreate the topic");
      case Status::Evicted:
        fail(kFailed, where + ": this consumer's cursor slot was taken away; run tail again");
      default:
        fail(kFailed, where + ": poll failed: " + to_string(r.status));
    }
  }
  // Nothing found at or after the time: say whether unstamped messages are
  // why (the consumer jumped past them; an error path, so a scan is fine).
  if (since && printed == 0 && unstamped == 0 && !o.follow && !stop_requested()) {
    ConsumerOptions all = co;
    all.start = ConsumerOptions::Start::Earliest;
    if (auto scan = Consumer::open(ctx.bus, o.topic, all)) {
      while (scan->position() < end) {
        const PollResult r =
            scan->poll([&](const Message& m) { unstamped += m.timestamp_ns == 0 ? 1 : 0; }, 1024);
        if (r.status != Status::Ok && r.status != Status::Lagged) break;
      }
    }
  }
  if (since && unstamped > 0 && !stop_requested())
    fail(kFailed, where + ": nothing at or after " + from + ": " + std::to_string(unstamped) +
                      " of the messages carry no timestamp (their producers opened with "
                      "timestamps = false), so --from TIME cannot place them; use --from "
                      "beginning or a position");
}

}  // namespace shmbus::cli
