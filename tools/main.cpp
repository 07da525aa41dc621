// shmbus — the command-line tool: topics, publish, tail, stat, doctor, bench.
//
// This file is the command line (CLI11) only; each subcommand's work is in
// its own file (commands.hpp). Exit codes: see kFooter.
#include <CLI/CLI.hpp>
#include <bit>
#include <cstdio>
#include <iostream>
#include <string>

#include "commands.hpp"
#include "header.hpp"
#include "log/ring.hpp"
#include "shm/name.hpp"
#include "util.hpp"

namespace {

using namespace shmbus::cli;

constexpr const char* kFooter = R"(Exit codes:
  0  ok
  1  the operation failed (the message says what to do)
  2  usage error (bad command line)
  3  not found (no such topic)

Environment: SHMBUS_BUS (the default for --bus), SHMBUS_SHM_ROOT (where bus
directories live, default /dev/shm/shmbus).

When shmbusd runs for the bus (its control socket exists: SHMBUS_SOCKET, or
$XDG_RUNTIME_DIR/shmbus/<bus>.sock, or /run/shmbus/<bus>.sock), topic create
and delete, publish and tail go through it, which checks the caller's rights;
without a daemon the tool works on the bus directory directly.)";

CLI::Validator duration_check() {
  return CLI::Validator(
      [](std::string& s) {
        std::string why;
        if (!parse_duration(s, &why)) return why;
        return std::string();
      },
      "DURATION");
}

CLI::Validator positive_duration_check() {
  return CLI::Validator(
      [](std::string& s) {
        std::string why;
        auto d = parse_duration(s, &why);
        if (!d) return why;
        if (d->count() <= 0) return std::string("must be more than 0");
        return std::string();
      },
      "DURATION");
}

CLI::Validator power_of_two(std::uint64_t min, std::uint64_t max) {
  return CLI::Validator(
      [min, max](std::string& s) {
        auto v = parse_u64(s);
        if (!v || !std::has_single_bit(*v) || *v < min || *v > max)
          return "'" + s + "' must be a power of two from " + std::to_string(min) + " to " +
                 std::to_string(max);
        return std::string();
      },
      "POW2");
}

CLI::Validator segment_size_check() {
  return CLI::Validator(
      [](std::string& s) {
        std::string why;
        auto v = parse_size(s, &why);
        if (!v) return why;
        if (!std::has_single_bit(*v) || *v < 4096 || *v > (1ull << 30))
          return "'" + s + "' must be a power of two from 4096 (4KiB) to 1GiB";
        return std::string();
      },
      "SIZE");
}

CLI::Validator size_check() {
  return CLI::Validator(
      [](std::string& s) {
        std::string why;
        return parse_size(s, &why) ? std::string() : why;
      },
      "SIZE");
}

CLI::Validator name_check(const char* what) {
  return CLI::Validator(
      [what](std::string& s) {
        auto ok = shmbus::shm::check_name(what, s);
        return ok ? std::string() : ok.error().message;
      },
      "NAME");
}

CLI::Validator mode_check() {
  return CLI::Validator(
      [](std::string& s) {
        char* end = nullptr;
        const unsigned long v = std::strtoul(s.c_str(), &end, 8);
        if (s.empty() || *end != '\0' || v > 0777)
          return "'" + s + "' is not an octal file mode like 0640";
        if ((v & 0002) != 0) return "'" + s + "' is world-writable; shmbus files never are";
        return std::string();
      },
      "OCTAL");
}

CLI::Validator from_check() {
  return CLI::Validator(
      [](std::string& s) {
        if (s == "beginning" || s == "end" || parse_u64(s)) return std::string();
        std::string why;
        if (!parse_time(s, 0, &why)) return why + ", or beginning, end, a position";
        return std::string();
      },
      "WHERE");
}

// replay --to: end, a position or a time.
CLI::Validator to_check() {
  return CLI::Validator(
      [](std::string& s) {
        if (s == "end" || parse_u64(s)) return std::string();
        std::string why;
        if (!parse_time(s, 0, &why)) return why + ", or end, a position";
        return std::string();
      },
      "WHERE");
}

CLI::Validator header_check() {
  return CLI::Validator(
      [](std::string& s) {
        std::string why;
        return parse_header(s, &why) ? std::string() : why;
      },
      "NAME[:TYPE]=VALUE");
}

// "shmbus topic create", for "see ... --help".
std::string command_path(const CLI::App& app) {
  std::string path = app.get_name();
  const CLI::App* at = &app;
  for (;;) {
    auto subs = at->get_subcommands();
    if (subs.empty()) break;
    at = subs.front();
    path += " " + at->get_name();
  }
  return path;
}

void add_topic(CLI::App& app, Context& ctx) {
  CLI::App* topic = app.add_subcommand("topic", "Create, list, describe and delete topics");
  topic->require_subcommand(1);

  auto create = std::make_shared<TopicCreateOptions>();
  CLI::App* c = topic->add_subcommand("create", "Create a topic (all partitions, or none)");
  c->add_option("name", create->name, "Topic name: 1..200 of [A-Za-z0-9._-]")
      ->required()
      ->check(name_check("topic"));
  c->add_option("-p,--partitions", create->partitions, "Number of partitions")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  c->add_option("--segment-bytes", create->segment_bytes,
                "Bytes per segment, a power of two (4096, 64KiB, 1MiB, ...); the largest "
                "message is a little under one segment")
      ->check(segment_size_check())
      ->capture_default_str();
  c->add_option("--segments", create->segments, "Segments per partition ring, a power of two")
      ->check(power_of_two(2, 1024))
      ->capture_default_str();
  c->add_option("--policy", create->policy,
                "When the ring is full of unread data: block (producers get Full) or overwrite "
                "(slow consumers get Lagged)")
      ->check(CLI::IsMember({"block", "overwrite"}))
      ->capture_default_str();
  c->add_option("--alignment", create->alignment,
                "Frame alignment in bytes, a power of two; 64 keeps small frames in one cache "
                "line")
      ->check(power_of_two(32, 4096))
      ->capture_default_str();
  c->add_option("--max-producers", create->max_producers, "Producer slots per partition")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  c->add_option("--max-consumers", create->max_consumers, "Consumer slots per partition")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  c->add_flag("--exclusive", create->exclusive,
              "One producer at a time (no atomic read-modify-write on the tail)");
  c->add_option("--hung-producer-timeout", create->hung_producer_timeout_ms,
                "ms a claim may stay open before shmbusd revokes it (0: never)")
      ->check(CLI::Range(0, 86'400'000))
      ->capture_default_str();
  c->add_option("--slow-consumer-timeout", create->slow_consumer_timeout_ms,
                "block: ms a consumer may hold producers back before shmbusd evicts it (0: never)")
      ->check(CLI::Range(0, 86'400'000))
      ->capture_default_str();
  c->add_flag("--durable", create->durable,
              "Record every message in segment files (shmbusd's spiller; see --fsync)");
  c->add_option("--fsync", create->fsync, "When the spiller calls fdatasync")
      ->check(CLI::IsMember({"never", "interval", "always"}))
      ->capture_default_str();
  c->add_option("--fsync-interval", create->fsync_interval_ms, "ms between fdatasyncs (interval)")
      ->check(CLI::Range(1, 60000))
      ->capture_default_str();
  c->add_option("--retention-bytes", create->retention_bytes,
                "Durable: delete the oldest segment files while they hold more than SIZE (0: no "
                "limit)")
      ->check(size_check())
      ->capture_default_str();
  c->add_option("--retention-time", create->retention_time,
                "Durable: delete segment files last written longer ago than DURATION (0: no "
                "limit)")
      ->check(duration_check())
      ->capture_default_str();
  c->add_option("--mode", create->mode, "File mode of the topic's files (octal)")
      ->check(mode_check())
      ->capture_default_str();
  c->add_flag("--huge-pages", create->huge_pages,
              "Ask for transparent huge pages (needs shmem_enabled advise or always; see "
              "shmbus doctor)");
  c->add_flag("--lock", create->lock, "mlock the rings (needs RLIMIT_MEMLOCK; see shmbus doctor)");
  c->add_option("--numa-node", create->numa_node,
                "Put the memory on this NUMA node, or 'auto' for the node this command runs on")
      ->check(CLI::IsMember({"auto"}) | CLI::Range(0, 4095));
  c->callback([&ctx, create] { run_topic_create(ctx, *create); });

  auto list = std::make_shared<TopicListOptions>();
  CLI::App* l = topic->add_subcommand("list", "List the topics of the bus (its *.0.log files)");
  l->add_flag("--json", list->json, "One JSON array of topics");
  l->callback([&ctx, list] { run_topic_list(ctx, *list); });

  auto describe = std::make_shared<TopicDescribeOptions>();
  CLI::App* d =
      topic->add_subcommand("describe", "Show a topic's options and each partition's state");
  d->add_option("name", describe->name, "Topic name")->required();
  d->add_flag("--json", describe->json, "One JSON object");
  d->callback([&ctx, describe] { run_topic_describe(ctx, *describe); });

  auto del = std::make_shared<TopicDeleteOptions>();
  CLI::App* x = topic->add_subcommand(
      "delete", "Delete a topic's files; processes that mapped them keep their mappings");
  x->add_option("name", del->name, "Topic name")->required();
  x->callback([&ctx, del] { run_topic_delete(ctx, *del); });
}

void add_publish(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<PublishOptions>();
  CLI::App* p = app.add_subcommand(
      "publish", "Publish messages: the MESSAGE arguments, or one per line of stdin");
  p->add_option("topic", o->topic, "Topic name")->required();
  p->add_option("message", o->messages,
                "Payloads; none: read stdin, one message per line (without the newline)");
  p->add_option("-p,--partition", o->partition, "Partition")->capture_default_str();
  p->add_option("-k,--key", o->key, "Key of every message")
      ->check(CLI::Validator(
          [](std::string& s) {
            return s.size() > 0xffff ? std::string("a key is at most 65535 bytes") : "";
          },
          "KEY"));
  p->add_option("-H,--header", o->headers,
                "A header on every message (repeatable): name=value (a string), or "
                "name:int=5, name:double=1.5, name:bool=true, name:bytes=0a1b (hex)")
      ->check(header_check());
  p->add_flag("--no-timestamp", o->no_timestamp,
              "Publish with timestamps = false: the messages carry none (time 0)");
  p->add_option("--timeout", o->timeout,
                "How long to retry while the partition is full (a block topic whose slowest "
                "consumer is a ring behind); 0: do not wait")
      ->check(duration_check())
      ->capture_default_str();
  p->footer(
      "Fails (exit 1) when a message does not fit in a segment, or when the partition stays "
      "full for --timeout; messages before it were published.");
  p->callback([&ctx, o] { run_publish(ctx, *o); });
}

void add_tail(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<TailOptions>();
  CLI::App* t = app.add_subcommand("tail", "Print the messages of a partition");
  t->add_option("topic", o->topic, "Topic name")->required();
  t->add_option("-p,--partition", o->partition, "Partition")->capture_default_str();
  t->add_option("--from", o->from,
                "Where to start: beginning (the oldest message in the ring), end, a POSITION "
                "(a message's position), or a TIME: ISO-8601 (2026-11-25T10:00:00Z; no zone "
                "means UTC) or relative (-5m, -30s, -2h): the first message stamped at or "
                "after it. Default: beginning, or end with --follow")
      ->check(from_check());
  t->add_flag("-f,--follow", o->follow, "Keep waiting for new messages (until Ctrl-C)");
  t->add_flag("--gating", o->gating,
              "Read as a gating consumer: hold producers of a block topic back until tail has "
              "read (default: an observer that never holds them back and reports what it "
              "missed when they lap it, even if paused with Ctrl-Z)");
  t->add_option("--name", o->name,
                "Read through a durable named cursor (as a Kafka consumer group's committed "
                "offset): resume where the last tail with this name stopped (--from applies "
                "only to a new name); it gates like --gating, and keeps its place, holding a "
                "block topic's producers there, until `shmbus cursor delete`");
  t->add_option("--format", o->format, "text, hex (a hexdump of each payload) or json")
      ->check(CLI::IsMember({"text", "hex", "json"}))
      ->capture_default_str();
  t->add_option("-n,--count", o->count, "Stop after N messages (0: no limit)")
      ->capture_default_str();
  t->footer(R"(Formats:
  text  position=P time=ISO-8601 [key="K"] [headers={"name"="value", ...}] payload="..."
        with \" \\ \n \r \t and \xNN escapes for bytes that are not printable
  hex   the same line without the payload, then the payload as a hexdump
  json  one object per line: position, partition, timestamp_ns, time, key (or null),
        headers (an object), and payload (a string when it is valid UTF-8) or
        payload_base64; keys and headers that are not UTF-8 are escaped as in text

tail reads as an observer unless told otherwise: it never holds producers
back, and says what it missed when they lap it. With --gating or --name, a
tail that is not reading (a paused terminal) holds a block topic's producers
back like any slow consumer.)");
  t->callback([&ctx, o] { run_tail(ctx, *o); });
}

void add_replay(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<ReplayOptions>();
  CLI::App* r = app.add_subcommand(
      "replay", "Republish a range of a partition into another topic, paced or at full speed");
  r->add_option("topic", o->topic, "Topic to read")->required();
  r->add_option("-p,--partition", o->partition, "Partition to read")->capture_default_str();
  r->add_option("--from", o->from,
                "First message: beginning (the oldest one, on disk for a durable topic), a "
                "POSITION, or a TIME (the first message stamped at or after it), as tail's")
      ->check(from_check())
      ->capture_default_str();
  r->add_option("--to", o->to,
                "End of the range (not replayed): end (the tail when replay starts), a "
                "POSITION, or a TIME (the first message stamped at or after it; unstamped messages "
                "never end it); at the latest the tail when replay starts")
      ->check(to_check())
      ->capture_default_str();
  r->add_option("--into", o->into, "Topic to publish into")->required();
  r->add_option("--into-partition", o->into_partition, "Its partition")->capture_default_str();
  r->add_option("--speed", o->speed,
                "Pace by the recorded timestamps: 1 = real time, 10 = ten times faster, 0.5 = "
                "half speed; 0 = as fast as possible")
      ->check(CLI::Validator(
          [](std::string& v) {
            const double f = std::strtod(v.c_str(), nullptr);
            return f == 0 || (f >= 0.001 && f <= 1e6) ? std::string()
                                                      : std::string("0, or 0.001 to 1000000");
          },
          "F"))
      ->capture_default_str();
  r->add_option("-n,--count", o->count, "Stop after N messages (0: no limit)")
      ->capture_default_str();
  r->add_option("--timeout", o->timeout, "How long to retry while the destination is full")
      ->check(duration_check())
      ->capture_default_str();
  r->add_flag("--json", o->json, "Print the report as one JSON object");
  r->footer(R"(Keys, headers and payloads are copied; each message gets a new timestamp
when it is republished. Paced replay sends message i at the first send's time +
(its stamp - the first stamp) / speed, every due time counted from that anchor, so
errors do not add up; stamps that go backwards wait for nothing. The report gives
the achieved speed, how far the last send was from due, and the lateness (sent -
due) p50, p99, p99.9 and max. replay reads as an observer (it never holds
producers back); on a durable topic it reads what the ring no longer holds from
the segment files.)");
  r->callback([&ctx, o] { run_replay(ctx, *o); });
}

void add_cursor(CLI::App& app, Context& ctx) {
  CLI::App* cursor =
      app.add_subcommand("cursor", "Durable named cursors (tail --name, ConsumerOptions::name)");
  cursor->require_subcommand(1);
  auto o = std::make_shared<CursorDeleteOptions>();
  CLI::App* d = cursor->add_subcommand(
      "delete",
      "Delete a named cursor, so that it no longer holds producers back; refused "
      "while a live consumer holds it");
  d->add_option("topic", o->topic, "Topic name")->required();
  d->add_option("name", o->name, "Cursor name")->required();
  d->add_option("-p,--partition", o->partition, "Partition")->capture_default_str();
  d->callback([&ctx, o] { run_cursor_delete(ctx, *o); });
}

void add_stat(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<StatOptions>();
  CLI::App* s = app.add_subcommand(
      "stat", "Live per-partition rates, fill and consumer lag, refreshed like top");
  s->add_option("topic", o->topics, "Topics (default: every topic of the bus)");
  s->add_option("-i,--interval", o->interval, "Time between refreshes (and of a rate sample)")
      ->check(positive_duration_check())
      ->capture_default_str();
  s->add_flag("--once", o->once, "Print one table (rates measured over one --interval) and exit");
  s->add_flag("--json", o->json, "One JSON object per refresh");
  s->footer(R"(Columns: TAIL is the next position producers will write (bytes since the
topic was created); BYTES/S is its rate; FILL is (tail - slowest consumer) /
capacity: at 100% a block topic's producers get Full and an overwrite topic's
slowest consumer is lapped. LAG is tail - the consumer's position, in bytes.
Message counts are not recorded by the partition log, so there is no msgs/s.)");
  s->callback([&ctx, o] { run_stat(ctx, *o); });
}

void add_doctor(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<DoctorOptions>();
  CLI::App* d = app.add_subcommand(
      "doctor", "Check what matters for latency on this machine, and what to change");
  d->add_flag("--json", o->json, "One JSON object");
  d->callback([&ctx, o] { run_doctor(ctx, *o); });
}

void add_bench(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* b = app.add_subcommand(
      "bench", "Latency and throughput of shmbus on this machine, between two pinned processes");
  b->add_option("--mode", o->mode,
                "rtt: round trips (A publishes on a ping topic, B echoes on a pong topic); "
                "one-way: A publishes, B measures each message from its intended send time")
      ->check(CLI::IsMember({"rtt", "one-way"}))
      ->capture_default_str();
  b->add_option("-s,--sizes", o->sizes, "Payload sizes in bytes, comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(16, (1 << 20) - 1024))
      ->capture_default_str();
  b->add_option("--cpus", o->cpus, "The CPUs of process A and process B")
      ->delimiter(',')
      ->expected(2)
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  b->add_option("--wait", o->wait,
                "How consumers wait: spin (poll in a loop), yield (WaitStrategy::SpinYield), "
                "futex (WaitStrategy::Futex: sleep until a producer wakes them)")
      ->check(CLI::IsMember({"spin", "yield", "futex"}))
      ->capture_default_str();
  b->add_option("--policy", o->policy, "The topics' policy: block or overwrite")
      ->check(CLI::IsMember({"block", "overwrite"}))
      ->capture_default_str();
  b->add_flag("--durable", o->durable,
              "Durable topics: shmbusd's spiller records them while they are measured (the "
              "live path with spilling on; needs shmbusd)");
  b->add_option("--rate", o->rate,
                "Offered rate, messages (round trips) per second; each is measured from its "
                "intended send time, so a stall also counts against the messages queued behind "
                "it (coordinated omission). 0: back-to-back")
      ->check(CLI::Range(0.0, 1e9))
      ->capture_default_str();
  auto* n = b->add_option("-n,--messages", o->messages, "Measured messages (round trips) per size")
                ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))
                ->capture_default_str();
  b->add_option("-d,--duration", o->duration,
                "Run length per size instead of --messages (1s, 500ms, 2m)")
      ->check(positive_duration_check())
      ->excludes(n);
  b->add_option("--warmup", o->warmup, "Messages (round trips) per size before measuring")
      ->capture_default_str();
  b->add_option("--timeout", o->timeout, "Give up on a test after this many seconds")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  b->add_flag("--json", o->json, "One JSON object instead of the table");
  b->add_option("--hgrm", o->hgrm,
                "Also write each size's percentile distribution to PREFIX-MODE-SIZEB.hgrm "
                "(HdrHistogram's text format, microseconds; bench/plot.py draws them)");
  b->add_flag("--quick", o->quick, "Smoke mode: 2000 messages and 200 warm-up per size");
  b->footer(R"(Topics bench.<pid>.<size>.ping/.pong (block or --policy, frame alignment 64,
exclusive producer, 4 x 1 MiB) are created for the run and deleted after it:
through shmbusd when it runs for --bus, otherwise in a private bus root under
/dev/shm. Processes A and B are forked and pinned to --cpus; the latency
histogram is log-linear (< 0.8% error). For the comparison with other
transports see bench/peers/run.)");
  b->callback([&ctx, o] { run_bench(ctx, *o); });
}

}  // namespace

int main(int argc, char** argv) {
  Context ctx;
  CLI::App app(
      "shmbus — topics, publish, tail, stat, doctor and bench for a shared-memory message bus",
      "shmbus");
  app.fallthrough();  // --bus may come after the subcommand
  app.require_subcommand(1);
  app.add_option("--bus", ctx.bus, "The bus (a directory under SHMBUS_SHM_ROOT)")
      ->envname("SHMBUS_BUS")
      ->check(name_check("bus"))
      ->capture_default_str();
  add_topic(app, ctx);
  add_publish(app, ctx);
  add_tail(app, ctx);
  add_replay(app, ctx);
  add_cursor(app, ctx);
  add_stat(app, ctx);
  add_doctor(app, ctx);
  add_bench(app, ctx);
  app.footer(kFooter);  // after the subcommands: only the top-level help shows it

  install_stop_handlers();
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // "shmbus bogus" and "shmbus topic bogus" leave the word unparsed.
    const CLI::App* at = &app;
    while (!at->get_subcommands().empty()) at = at->get_subcommands().front();
    const std::vector<std::string> left = app.remaining(true);
    std::string what = e.what();
    if (!left.empty() && !at->get_subcommands({}).empty() && at->get_subcommands().empty())
      what = "unknown command '" + left.front() + "'";
    std::fprintf(stderr, "shmbus: %s (see: %s --help)\n", what.c_str(), command_path(app).c_str());
    return kUsage;
  } catch (const Failure& f) {
    std::fprintf(stderr, "shmbus: %s\n", f.what());
    return f.code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shmbus: %s\n", e.what());
    return kFailed;
  }
  return kOk;
}
