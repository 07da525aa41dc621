// topic.cpp — topic admin: create, describe, delete, delete_cursor.
#include "shmbus/topic.hpp"
#include "bindings.hpp"

namespace shmbus::python {

namespace {

const char* policy_name(Policy p) {
  return p == Policy::Overwrite ? "overwrite" : "block";
}
const char* fsync_name(Fsync f) {
  return f == Fsync::Never ? "never" : f == Fsync::Always ? "always" : "interval";
}

py::dict options_dict(const TopicOptions& o) {
  py::dict d;
  d["partitions"] = o.partitions;
  d["segment_bytes"] = o.segment_bytes;
  d["segment_count"] = o.segment_count;
  d["policy"] = policy_name(o.policy);
  d["frame_alignment"] = o.frame_alignment;
  d["max_producers"] = o.max_producers;
  d["max_consumers"] = o.max_consumers;
  d["exclusive_producer"] = o.exclusive_producer;
  d["hung_producer_timeout_ms"] = o.hung_producer_timeout_ms;
  d["slow_consumer_timeout_ms"] = o.slow_consumer_timeout_ms;
  d["durable"] = o.durable;
  d["fsync"] = fsync_name(o.fsync);
  d["fsync_interval_ms"] = o.fsync_interval_ms;
  d["retention_bytes"] = o.retention_bytes;
  d["retention_ms"] = o.retention_ms;
  return d;
}

py::dict partition_dict(const PartitionInfo& p) {
  py::dict d;
  d["tail"] = p.tail;
  d["oldest"] = p.oldest;
  d["producers"] = p.producers;
  d["consumers"] = p.consumers;
  py::list consumers;
  for (std::size_t i = 0; i < p.consumer_positions.size(); ++i) {
    py::dict c;
    c["position"] = p.consumer_positions[i];
    c["pid"] = i < p.consumer_pids.size() ? p.consumer_pids[i] : 0;
    c["name"] = i < p.consumer_names.size() ? p.consumer_names[i] : std::string();
    consumers.append(c);
  }
  d["cursors"] = consumers;
  py::list pids;
  for (const std::uint32_t pid : p.producer_pids) pids.append(pid);
  d["producer_pids"] = pids;
  py::dict spill;
  spill["committed"] = p.spill.committed;
  spill["written"] = p.spill.written;
  spill["durable"] = p.spill.durable;
  spill["disk_start"] = p.spill.disk_start;
  spill["errno"] = p.spill.spill_errno;
  d["spill"] = spill;
  return d;
}

void create(const std::string& topic, const py::object& bus, std::uint32_t partitions,
            const std::string& policy, std::uint64_t segment_bytes, std::uint32_t segment_count,
            bool exclusive_producer, std::uint32_t max_producers, std::uint32_t max_consumers,
            std::uint32_t frame_alignment, bool durable, const std::string& fsync,
            std::uint32_t fsync_interval_ms, std::uint64_t retention_bytes,
            std::uint64_t retention_ms, std::uint32_t hung_producer_timeout_ms,
            std::uint32_t slow_consumer_timeout_ms, unsigned mode) {
  TopicOptions o;
  o.partitions = partitions;
  if (policy == "block")
    o.policy = Policy::Block;
  else if (policy == "overwrite")
    o.policy = Policy::Overwrite;
  else
    raise_invalid("policy: expected 'block' or 'overwrite', got '" + policy + "'");
  o.segment_bytes = segment_bytes;
  o.segment_count = segment_count;
  o.exclusive_producer = exclusive_producer;
  o.max_producers = max_producers;
  o.max_consumers = max_consumers;
  o.frame_alignment = frame_alignment;
  o.durable = durable;
  if (fsync == "never")
    o.fsync = Fsync::Never;
  else if (fsync == "interval")
    o.fsync = Fsync::Interval;
  else if (fsync == "always")
    o.fsync = Fsync::Always;
  else
    raise_invalid("fsync: expected 'never', 'interval' or 'always', got '" + fsync + "'");
  o.fsync_interval_ms = fsync_interval_ms;
  o.retention_bytes = retention_bytes;
  o.retention_ms = retention_ms;
  o.hung_producer_timeout_ms = hung_producer_timeout_ms;
  o.slow_consumer_timeout_ms = slow_consumer_timeout_ms;
  o.mode = static_cast<mode_t>(mode);
  const std::string b = bus_name(bus);
  Outcome r = [&] {
    py::gil_scoped_release nogil;
    return Topic::create(b, topic, o);
  }();
  if (!r) raise(r.error());
}

}  // namespace

void bind_topic(py::module_& m) {
  m.def("create", &create, py::arg("topic"), py::kw_only(), py::arg("bus") = py::none(),
        py::arg("partitions") = 1, py::arg("policy") = "block", py::arg("segment_bytes") = 1u << 20,
        py::arg("segment_count") = 4, py::arg("exclusive_producer") = false,
        py::arg("max_producers") = 16, py::arg("max_consumers") = 16,
        py::arg("frame_alignment") = 64, py::arg("durable") = false, py::arg("fsync") = "interval",
        py::arg("fsync_interval_ms") = 100, py::arg("retention_bytes") = 0,
        py::arg("retention_ms") = 0, py::arg("hung_producer_timeout_ms") = 1000,
        py::arg("slow_consumer_timeout_ms") = 0, py::arg("mode") = 0640,
        R"(Creates a topic (its ring is segment_bytes x segment_count per partition).
Raises an Error naming the problem: it exists (FileExistsError's errno EEXIST),
an option out of range (InvalidArgument), no right to (PermissionDenied).)");
  m.def(
      "describe",
      [](const std::string& topic, const py::object& bus) {
        const std::string b = bus_name(bus);
        Result<TopicInfo> info = Topic::describe(b, topic);
        if (!info) raise(info.error());
        py::dict d;
        d["name"] = info->name;
        d["options"] = options_dict(info->options);
        py::list parts;
        for (const PartitionInfo& p : info->partitions) parts.append(partition_dict(p));
        d["partitions"] = parts;
        return d;
      },
      py::arg("topic"), py::kw_only(), py::arg("bus") = py::none(),
      "The topic's options and each partition's tail, cursors and spill watermarks, as a dict.");
  m.def(
      "delete",
      [](const std::string& topic, const py::object& bus) {
        const std::string b = bus_name(bus);
        Outcome r = [&] {
          py::gil_scoped_release nogil;
          return Topic::remove(b, topic);
        }();
        if (!r) raise(r.error());
      },
      py::arg("topic"), py::kw_only(), py::arg("bus") = py::none(),
      "Removes the topic (processes that mapped it keep their mappings).");
  m.def(
      "delete_cursor",
      [](const std::string& topic, std::uint32_t partition, const std::string& name,
         const py::object& bus) {
        const std::string b = bus_name(bus);
        if (auto r = Topic::delete_cursor(b, topic, partition, name); !r) raise(r.error());
      },
      py::arg("topic"), py::arg("partition"), py::arg("name"), py::kw_only(),
      py::arg("bus") = py::none(), "Deletes a durable named cursor.");
}

}  // namespace shmbus::python
