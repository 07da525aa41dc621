// tests/fuzz/make_corpus.cpp — writes the seed corpus of the fuzz targets
// (tests/fuzz/corpus/<target>/) from the project's own encoders: control
// messages by control::encode, registry entries by encode_entry, ring and
// cursor files made by Topic::create and filled by a real Producer, and the
// frames found in them; plus a few edge cases by hand.
//
//   build/tests/fuzz/make_corpus tests/fuzz/corpus
//
// The output is deterministic but for the ring's random salt, the creators'
// pids and times, and timestamps: rerun it only to change the seeds.
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "control/protocol.hpp"
#include "control/registry.hpp"
#include "log/ring.hpp"
#include "log/segment_format.hpp"
#include "shmbus/shmbus.hpp"

using namespace shmbus;
namespace fs = std::filesystem;

namespace {

fs::path out_root;

void write(const std::string& target, const std::string& name, const std::vector<std::byte>& b) {
  fs::create_directories(out_root / target);
  std::ofstream f(out_root / target / name, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f) {
    std::fprintf(stderr, "make_corpus: cannot write %s/%s\n", target.c_str(), name.c_str());
    std::exit(1);
  }
}

template <class T>
void append(std::vector<std::byte>& v, const T& x) {
  const auto* p = reinterpret_cast<const std::byte*>(&x);
  v.insert(v.end(), p, p + sizeof x);
}

std::vector<std::byte> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}

// --- control messages ---

void protocol_seed(const std::string& name, const control::Message& m, bool hello_done,
                   bool reply) {
  std::vector<std::byte> b{
      std::byte{static_cast<unsigned char>((hello_done ? 2 : 0) | (reply ? 4 : 0))}};
  const auto d = control::encode(m);
  b.insert(b.end(), d.begin(), d.end());
  write("protocol", name, b);
}

void protocol() {
  using control::Message;
  using control::MsgType;
  auto msg = [](MsgType t, std::string name = {}) {
    Message m;
    m.type = t;
    m.request_id = 7;
    m.name = std::move(name);
    return m;
  };
  protocol_seed("hello", msg(MsgType::Hello, "demo-client"), false, false);
  Message create = msg(MsgType::CreateTopic, "orders");
  create.options.partitions = 4;
  create.options.segment_bytes = 1 << 16;
  create.options.policy = Policy::Overwrite;
  create.options.exclusive_producer = true;
  create.numa_node = 0;
  create.acl.owner_uid = 1000;
  create.acl.group_gid = 100;
  create.acl.mode = 0640;
  create.acl.producer_users = {1001, 1002};
  create.acl.consumer_groups = {27};
  protocol_seed("create-topic", create, true, false);
  protocol_seed("delete-topic", msg(MsgType::DeleteTopic, "orders"), true, false);
  protocol_seed("describe-topic", msg(MsgType::DescribeTopic, "orders"), true, false);
  protocol_seed("list-topics", msg(MsgType::ListTopics), true, false);
  Message attach = msg(MsgType::AttachConsumer, "orders");
  attach.partition = 3;
  protocol_seed("attach-consumer", attach, true, false);
  attach.type = MsgType::AttachProducer;
  protocol_seed("attach-producer", attach, true, false);
  attach.type = MsgType::Detach;
  protocol_seed("detach", attach, true, false);
  Message reattach = msg(MsgType::Reattach, "orders");
  reattach.partition = 1;
  reattach.role = control::Role::Consumer;
  protocol_seed("reattach", reattach, true, false);
  protocol_seed("stats", msg(MsgType::Stats), true, false);

  protocol_seed("reply-ok", msg(MsgType::Ok), false, true);
  Message hello_ok = msg(MsgType::Ok, "bus-a");
  hello_ok.pid = 4242;
  protocol_seed("reply-ok-hello", hello_ok, false, true);
  protocol_seed("reply-error",
                control::error_reply(9, control::ErrorCode::Denied, "the ACL does not grant it"),
                false, true);
  Message described = create;
  described.type = MsgType::Described;
  described.name.clear();
  described.partitions = {{128, 1, 2}, {0, 0, 0}};
  protocol_seed("reply-described", described, false, true);
  Message listed = msg(MsgType::Listed);
  listed.names = {"orders", "trades.eu"};
  protocol_seed("reply-listed", listed, false, true);
  Message attached = msg(MsgType::Attached);
  attached.partition = 2;
  attached.role = control::Role::Consumer;
  attached.ring_bytes = 1 << 22;
  protocol_seed("reply-attached", attached, false, true);
  Message stats = msg(MsgType::StatsReply);
  stats.stats = {3, 2, 100, 1, 4, 5, 6, 7};
  protocol_seed("reply-stats", stats, false, true);

  // Edge cases: a second Hello, a header alone with a wrong magic, a body cut short.
  protocol_seed("edge-second-hello", msg(MsgType::Hello, "again"), true, false);
  std::vector<std::byte> bad(1 + control::kHeaderBytes, std::byte{0x5a});
  bad[0] = std::byte{2};
  write("protocol", "edge-bad-magic", bad);
  std::vector<std::byte> cut{std::byte{2}};
  const auto full = control::encode(create);
  cut.insert(cut.end(), full.begin(), full.end() - 9);
  write("protocol", "edge-cut-body", cut);
}

// --- registry files ---

control::TopicRecord record(std::string name, control::EntryState state) {
  control::TopicRecord r;
  r.state = state;
  r.name = std::move(name);
  r.options.partitions = 2;
  r.options.segment_bytes = 1 << 20;
  r.options.segment_count = 4;
  r.numa_node = -1;
  r.acl.owner_uid = 1000;
  r.acl.group_gid = 1000;
  r.acl.mode = 0640;
  r.acl.consumer_users = {1001};
  r.acl.producer_groups = {20, 21};
  return r;
}

void registry_seed(const std::string& name, const std::vector<control::TopicRecord>& records) {
  control::RegistryHeader h{};
  h.file.magic = shm::kMagic;
  h.file.layout_version = shm::kLayoutVersion;
  h.file.kind = shm::FileKind::Registry;
  h.file.file_bytes = sizeof h + records.size() * sizeof(control::RegistryEntry);
  h.file.header_bytes = sizeof h;
  h.generation = 6;
  h.capacity = static_cast<std::uint32_t>(records.size());
  h.entry_bytes = sizeof(control::RegistryEntry);
  std::vector<std::byte> b;
  append(b, h);
  for (const auto& r : records) append(b, control::encode_entry(r));
  write("registry", name, b);
}

void registry() {
  using control::EntryState;
  registry_seed("live-and-creating",
                {record("orders", EntryState::Live), record("trades.eu", EntryState::Creating)});
  registry_seed("one-deleting", {record("old_topic", EntryState::Deleting)});
  auto overwrite = record("ticks", EntryState::Live);
  overwrite.options.policy = Policy::Overwrite;
  overwrite.numa_node = 1;
  registry_seed("overwrite-numa-and-free",
                {overwrite, control::TopicRecord{}, record("x-1", EntryState::Live)});
  // Edge case: the same topic twice (read() refuses it).
  registry_seed("edge-duplicate",
                {record("orders", EntryState::Live), record("orders", EntryState::Live)});
}

// --- ring files and frames ---

std::vector<std::byte> trimmed(std::vector<std::byte> b) {
  while (!b.empty() && b.back() == std::byte{0}) b.pop_back();
  return b;
}

void ring_seed(const std::string& name, const std::vector<std::byte>& ring,
               const std::vector<std::byte>& cursors, std::uint32_t partition) {
  const auto r = trimmed(ring);
  const auto c = trimmed(cursors);
  std::vector<std::byte> b;
  append(b, static_cast<std::uint32_t>(ring.size()));
  append(b, static_cast<std::uint32_t>(cursors.size()));
  append(b, static_cast<std::uint32_t>(r.size()));
  append(b, partition);
  b.insert(b.end(), r.begin(), r.end());
  b.insert(b.end(), c.begin(), c.end());
  write("ring", name, b);
}

void fill(Producer& p) {
  const std::string payload(100, 'p');
  const auto bytes = std::as_bytes(std::span(payload));
  const std::array<std::byte, 3> trace{std::byte{0x4b}, std::byte{0xf9}, std::byte{0x01}};
  const std::array<Property, 5> props{
      Property{"content-type", "text/plain"}, Property{"retries", 3}, Property{"price", 101.25},
      Property{"urgent", true}, Property{"trace", PropertyValue::bytes(trace)}};
  const std::array<Property, 1> empty_value{Property{"flag", ""}};
  for (int i = 0; i < 40; ++i) {  // past the first segment: a PAD frame at its end
    Status s = Status::Ok;
    switch (i % 4) {
      case 0:
        s = p.offer(bytes.first(static_cast<std::size_t>(i)));
        break;
      case 1:
        s = p.offer(bytes, "key-" + std::to_string(i));
        break;
      case 2:
        s = p.offer(bytes.first(10), "k", props);
        break;
      case 3:
        s = p.offer({}, {}, empty_value);
        break;
    }
    if (s != Status::Ok) {
      std::fprintf(stderr, "make_corpus: offer %d: status %d\n", i, static_cast<int>(s));
      std::exit(1);
    }
  }
}

void frames(const fs::path& ring_file, const fs::path& cursor_file) {
  auto ring = log::Ring::open(ring_file.parent_path().string(), "frames", 0, false, false);
  if (!ring) {
    std::fprintf(stderr, "make_corpus: %s\n", ring.error().message.c_str());
    std::exit(1);
  }
  (void)cursor_file;
  std::uint64_t p = 0;
  int k = 0;
  const std::uint64_t tail = ring->tail().load();
  while (p < tail && k < 4) {
    const log::FrameHeader* f = ring->frame_at(p);
    const std::uint64_t n = ring->frame_bytes(f->length);
    if (f->type == log::FrameType::Data && (f->flags != 0 || k == 0)) {
      // As found in place (the rest of the segment), and cut to its length
      // with a private copy of the properties.
      const auto* at = reinterpret_cast<const std::byte*>(f);
      std::vector<std::byte> a{std::byte{0}};
      a.insert(a.end(), at, at + ring->segment_left(p));
      write("frame", "in-place-" + std::to_string(k), a);
      std::vector<std::byte> c{std::byte{1}};
      c.insert(c.end(), at, at + sizeof(log::FrameHeader) + f->length);
      write("frame", "copied-" + std::to_string(k), c);
      ++k;
    }
    p += n;
  }
  // Edge cases: an unknown flag, a key longer than the frame.
  log::FrameHeader h{};
  h.length = 8;
  h.type = log::FrameType::Data;
  h.flags = 4;
  std::vector<std::byte> e{std::byte{0}};
  append(e, h);
  e.resize(e.size() + 8);
  write("frame", "edge-unknown-flag", e);
  h.flags = 0x100;  // advisory: ignored
  std::vector<std::byte> advisory{std::byte{0}};
  append(advisory, h);
  advisory.resize(advisory.size() + 8);
  write("frame", "edge-advisory-flag", advisory);
  h.flags = 0;
  h.flags = log::kHasKey;
  std::vector<std::byte> key{std::byte{0}};
  append(key, h);
  append(key, std::uint16_t{7});
  key.resize(key.size() + 6);
  write("frame", "edge-key-too-long", key);
}

// Segment files of the ring's frames, as the spiller would write them:
// three batches and a gap, the preallocated zeros after them; and the same
// file torn inside its last batch.
void segments(const log::Ring& ring) {
  log::SegmentHeader h{};
  h.base = 0;
  h.span = 1 << 20;
  h.salt = ring.salt();
  h.ring_segment = ring.segment_bytes();
  h.alignment = ring.alignment();
  log::seal(h);
  std::vector<std::byte> file(log::kSegmentDataAt);
  std::memcpy(file.data(), &h, sizeof h);
  const auto* frames = reinterpret_cast<const std::byte*>(ring.frame_at(0));
  std::vector<std::uint64_t> ends;  // of each frame, in the ring's first lap
  for (std::uint64_t p = 0, tail = ring.tail().load(); p < tail && p < ring.capacity();) {
    p += ring.frame_bytes(ring.frame_at(p)->length);
    ends.push_back(p);
  }
  if (ends.size() < 3 || ends.back() > ring.capacity()) {
    std::fprintf(stderr, "make_corpus: the frames ring holds too few frames in its first lap\n");
    std::exit(1);
  }
  const std::vector<std::uint64_t> cuts{0, ends[ends.size() / 3], ends[2 * ends.size() / 3],
                                        ends.back()};
  auto add = [&](const log::BatchHeader& b, std::span<const std::byte> body) {
    const auto* at = reinterpret_cast<const std::byte*>(&b);
    file.insert(file.end(), at, at + sizeof b);
    file.insert(file.end(), body.begin(), body.end());
  };
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
    const std::span<const std::byte> body(frames + cuts[i], cuts[i + 1] - cuts[i]);
    const std::optional<log::BatchHeader> b = log::frames_batch(h, cuts[i], body);
    if (!b) {
      std::fprintf(stderr, "make_corpus: the ring's frames at %llu do not make a batch\n",
                   static_cast<unsigned long long>(cuts[i]));
      std::exit(1);
    }
    add(*b, body);
  }
  const std::uint64_t end = cuts.back();
  add(log::gap_batch(end, end + 4 * h.alignment), {});
  std::vector<std::byte> torn(file.begin(), file.end() - 100);
  file.resize(file.size() + 128);
  write("segment", "batches-and-gap", file);
  write("segment", "torn-last-batch", torn);
  write("segment", "batch-header-only",
        std::vector<std::byte>(file.begin(), file.begin() + 4096 + 64));
}

void rings() {
  char root[] = "/dev/shm/shmbus-corpus-XXXXXX";
  if (::mkdtemp(root) == nullptr) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  ::setenv("SHMBUS_SHM_ROOT", root, 1);
  const fs::path dir = fs::path(root) / "seeds";
  auto make = [&](const std::string& topic, const TopicOptions& o, bool produce) {
    if (auto ok = Topic::create("seeds", topic, o); !ok) {
      std::fprintf(stderr, "make_corpus: %s\n", ok.error().message.c_str());
      std::exit(1);
    }
    if (produce) {
      auto p = Producer::open("seeds", topic);
      if (!p) {
        std::fprintf(stderr, "make_corpus: %s\n", p.error().message.c_str());
        std::exit(1);
      }
      fill(*p);
    }
  };
  TopicOptions small;
  small.segment_bytes = 4096;
  small.segment_count = 2;
  small.max_producers = 1;
  small.max_consumers = 1;
  small.frame_alignment = 32;
  small.prefault = false;
  make("empty", small, false);
  make("frames", small, true);
  TopicOptions over = small;
  over.policy = Policy::Overwrite;
  over.partitions = 2;
  over.exclusive_producer = true;
  over.max_producers = 2;
  over.max_consumers = 3;
  over.frame_alignment = 64;
  make("over", over, true);

  auto seed = [&](const std::string& name, const std::string& topic, std::uint32_t partition) {
    ring_seed(name, read_file(log::ring_path(dir.string(), topic, partition)),
              read_file(log::cursor_path(dir.string(), topic, partition)), partition);
  };
  seed("empty", "empty", 0);
  seed("block-frames", "frames", 0);
  seed("overwrite-frames", "over", 0);
  seed("overwrite-partition-1", "over", 1);
  // Edge case: a ring asked for as another partition than its own.
  ring_seed("edge-wrong-partition", read_file(log::ring_path(dir.string(), "frames", 0)),
            read_file(log::cursor_path(dir.string(), "frames", 0)), 1);
  frames(log::ring_path(dir.string(), "frames", 0), log::cursor_path(dir.string(), "frames", 0));
  {
    auto ring = log::Ring::open(dir.string(), "frames", 0, false, false);
    if (!ring) {
      std::fprintf(stderr, "make_corpus: %s\n", ring.error().message.c_str());
      std::exit(1);
    }
    segments(*ring);
  }
  fs::remove_all(root);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus <corpus directory>\n");
    return 2;
  }
  out_root = argv[1];
  protocol();
  registry();
  rings();
  return 0;
}
