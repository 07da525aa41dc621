// reader.cpp — recorded data into NumPy: shmbus.read() and read_chunks()
// (shmbus/__init__.py) over _Reader.
//
// A _Reader is an observer consumer (it holds no producer back), opened at
// `start`; on a durable topic it reads the segment files, then the ring, as
// every consumer does. It ends at `end` (a position, or the first message
// stamped at or after a time), or at the tail as it was when the reader
// opened. Each next(n) returns up to n records as a structured array:
//
//   position u8 @0 | timestamp M8[ns] @8 | key_size u4 @16 | size u4 @20 | payload @24
//
// payload: the caller's dtype (each payload must be exactly its itemsize:
// fixed-size records such as ticks), or with dtype=None raw bytes ('V<n>',
// n the longest payload of the chunk; `size` says how many are the message's).
// Records are written straight into the array's memory: one copy per record,
// from the ring or the file buffer. The array owns that memory (writable: it
// is the caller's copy, nothing else sees it).
#include <pybind11/numpy.h>

#include <cstring>
#include <memory>
#include <vector>

#include "bindings.hpp"
#include "shmbus/consumer.hpp"
#include "shmbus/topic.hpp"

namespace shmbus::python {

namespace {

constexpr std::size_t kFixed = 24;

struct Fixed {
  std::uint64_t position;
  std::int64_t timestamp;
  std::uint32_t key_size;
  std::uint32_t size;
};
static_assert(sizeof(Fixed) == kFixed);

class Reader {
 public:
  Reader(const std::string& topic, const py::object& bus, std::uint32_t partition,
         const py::object& start, const py::object& end, const py::object& dtype) {
    const std::string b = bus_name(bus);
    what_ = "read of topic '" + topic + "' partition " + std::to_string(partition);
    if (!dtype.is_none()) {
      dtype_ = py::dtype::from_args(dtype);
      item_ = static_cast<std::size_t>(dtype_->itemsize());
      if (item_ == 0) raise_invalid("dtype: an item of 0 bytes");
    }
    ConsumerOptions o;
    o.partition = partition;
    o.gating = false;
    o.start = ConsumerOptions::Start::Earliest;
    if (!start.is_none()) parse_start(start, o);
    if (!end.is_none()) {
      if (PyLong_Check(end.ptr()) && !PyBool_Check(end.ptr())) {
        const auto e = end.cast<long long>();
        if (e < 0) raise_invalid("end: a negative position");
        end_position_ = static_cast<std::uint64_t>(e);
      } else {
        end_time_ = to_ns(end, "end");
      }
    }
    Result<TopicInfo> info = Topic::describe(b, topic);
    if (!info) raise(info.error());
    if (partition >= info->partitions.size())
      raise(Error{ENOENT, what_ + ": the topic has " + std::to_string(info->partitions.size()) +
                              " partition(s)"});
    end_position_ = std::min(end_position_, info->partitions[partition].tail);
    Result<Consumer> c = [&] {
      py::gil_scoped_release nogil;
      return Consumer::open(b, topic, o);
    }();
    if (!c) raise(c.error());
    consumer_ = std::make_unique<Consumer>(std::move(*c));
    done_ = consumer_->position() >= end_position_;
  }

  py::object next(std::uint64_t max_records) {
    if (done_ || max_records == 0) return py::none();
    records_.clear();
    blob_.clear();
    longest_ = 0;
    count_ = 0;
    const auto deliver = [&](const Message& m) { take(m, max_records); };
    while (!done_ && count_ < max_records) {
      const auto want =
          static_cast<std::uint32_t>(std::min<std::uint64_t>(4096, max_records - count_));
      PollResult r = consumer_->poll(deliver, want);
      if (r.status == Status::Empty) {
        // Below the end: a message claimed but not yet committed.
        const Deadline forever(py::none(), "timeout");
        wait_released(forever, [&](std::chrono::nanoseconds slice) {
          r = consumer_->poll_wait(deliver, want, slice);
          return r.status != Status::Timeout && r.status != Status::Empty;
        });
      }
      if (consumer_->position() >= end_position_) done_ = true;
      if (r.status == Status::Lagged)
        raise_lagged(what_, consumer_->lost().from, consumer_->lost().to);
      if (r.status == Status::Corrupt) raise_corrupt(what_, consumer_->position());
      if (r.status != Status::Ok && r.status != Status::Empty && r.status != Status::Timeout)
        raise_status(r.status, what_);
    }
    if (count_ == 0) return py::none();
    return dtype_ ? finish_typed() : finish_raw();
  }

 private:
  void take(const Message& m, std::uint64_t max_records) {
    if (done_ || count_ >= max_records) return;
    if (m.position >= end_position_ || (end_time_ && m.timestamp_ns >= *end_time_)) {
      done_ = true;
      return;
    }
    const Fixed f{m.position, m.timestamp_ns, static_cast<std::uint32_t>(m.key.size()),
                  static_cast<std::uint32_t>(m.payload.size())};
    if (dtype_) {
      if (m.payload.size() != item_) {
        bad_size_ = m.position;
        bad_bytes_ = m.payload.size();
        done_ = true;
        return;
      }
      const std::size_t at = records_.size();
      records_.resize(at + kFixed + item_);
      std::memcpy(records_.data() + at, &f, kFixed);
      std::memcpy(records_.data() + at + kFixed, m.payload.data(), item_);
    } else {
      const std::size_t at = records_.size();
      records_.resize(at + kFixed);
      std::memcpy(records_.data() + at, &f, kFixed);
      blob_.insert(blob_.end(), m.payload.begin(), m.payload.end());
      longest_ = std::max(longest_, m.payload.size());
    }
    ++count_;
  }

  py::dtype record_dtype(const py::object& payload) const {
    py::module_ np = py::module_::import("numpy");
    py::dict spec;
    spec["names"] = py::make_tuple("position", "timestamp", "key_size", "size", "payload");
    spec["formats"] = py::make_tuple("<u8", "<M8[ns]", "<u4", "<u4", payload);
    spec["offsets"] = py::make_tuple(0, 8, 16, 20, kFixed);
    return py::dtype::from_args(spec);
  }

  // An array over `bytes`, which it then owns.
  static py::array own(std::vector<std::byte>&& bytes, const py::dtype& dt, std::size_t n) {
    auto* held = new std::vector<std::byte>(std::move(bytes));
    py::capsule owner(held, [](void* p) { delete static_cast<std::vector<std::byte>*>(p); });
    return py::array(dt, {static_cast<py::ssize_t>(n)}, {}, held->data(), owner);
  }

  py::object finish_typed() {
    if (bad_size_)
      raise_invalid("dtype: the message at position " + std::to_string(*bad_size_) + " has " +
                    std::to_string(bad_bytes_) + " bytes; " + text(*dtype_) + " is " +
                    std::to_string(item_) + " (" + what_ + ")");
    return own(std::move(records_), record_dtype(*dtype_), count_);
  }

  py::object finish_raw() {
    const std::size_t item = kFixed + longest_;
    std::vector<std::byte> out(item * count_);
    std::size_t from = 0;
    for (std::size_t i = 0; i < count_; ++i) {
      Fixed f;
      std::memcpy(&f, records_.data() + i * kFixed, kFixed);
      std::memcpy(out.data() + i * item, &f, kFixed);
      std::memcpy(out.data() + i * item + kFixed, blob_.data() + from, f.size);
      from += f.size;
    }
    return own(std::move(out), record_dtype(py::str("V" + std::to_string(longest_ ? longest_ : 1))),
               count_);
  }

  std::string what_;
  std::optional<py::dtype> dtype_;
  std::size_t item_ = 0;
  std::uint64_t end_position_ = UINT64_MAX;
  std::optional<std::int64_t> end_time_;
  std::unique_ptr<Consumer> consumer_;
  bool done_ = false;
  std::vector<std::byte> records_, blob_;
  std::size_t longest_ = 0;
  std::uint64_t count_ = 0;
  std::optional<std::uint64_t> bad_size_;
  std::size_t bad_bytes_ = 0;
};

}  // namespace

void bind_reader(py::module_& m) {
  py::class_<Reader>(m, "_Reader")
      .def(py::init<const std::string&, const py::object&, std::uint32_t, const py::object&,
                    const py::object&, const py::object&>(),
           py::arg("topic"), py::arg("bus"), py::arg("partition"), py::arg("start"), py::arg("end"),
           py::arg("dtype"))
      .def("next", &Reader::next, py::arg("max_records"));
}

}  // namespace shmbus::python
