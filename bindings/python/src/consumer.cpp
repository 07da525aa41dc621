// consumer.cpp — shmbus.Consumer: poll, poll_batch, iteration, seek.
//
// Every message is copied out in the poll handler (message.hpp says why).
// poll() tries once with the GIL held; only an empty partition costs a GIL
// release, then it waits in slices (bindings.hpp). A status that ends a
// batch after some messages (Lagged, Corrupt, Evicted) is kept and raised by
// the next call, so no message and no loss goes unreported. Evicted after a
// message: the last one may have been overwritten while it was copied, so it
// is dropped, and the Evicted error names its position.
#include <memory>
#include <vector>

#include "bindings.hpp"
#include "message.hpp"
#include "shmbus/consumer.hpp"
#include "shmbus/topic.hpp"

namespace shmbus::python {

namespace {

WaitStrategy wait_strategy(const std::string& s) {
  if (s == "busy_spin") return WaitStrategy::BusySpin;
  if (s == "spin_yield") return WaitStrategy::SpinYield;
  if (s == "futex") return WaitStrategy::Futex;
  raise_invalid("wait: expected 'busy_spin', 'spin_yield' or 'futex', got '" + s + "'");
}

}  // namespace

// start: 'latest', 'earliest', a position (int), or a time (datetime,
// numpy.datetime64, pandas.Timestamp): the first message stamped at or after it.
void parse_start(const py::handle start, ConsumerOptions& o) {
  if (PyUnicode_Check(start.ptr())) {
    const auto s = start.cast<std::string>();
    if (s == "latest")
      o.start = ConsumerOptions::Start::Latest;
    else if (s == "earliest")
      o.start = ConsumerOptions::Start::Earliest;
    else
      raise_invalid("start: expected 'latest', 'earliest', a position or a time, got '" + s + "'");
  } else if (PyLong_Check(start.ptr()) && !PyBool_Check(start.ptr())) {
    const auto p = start.cast<long long>();
    if (p < 0) raise_invalid("start: a negative position");
    o.start = ConsumerOptions::Start::Position;
    o.position = static_cast<std::uint64_t>(p);
  } else {
    o.start = ConsumerOptions::Start::Time;
    o.time_ns = to_ns(start, "start");
  }
}

class PyConsumer {
 public:
  PyConsumer(const std::string& topic, const py::object& bus, std::uint32_t partition,
             const py::object& start, const py::object& name, bool gating, const std::string& wait)
      : generation_(fork_generation()) {
    options_.partition = partition;
    parse_start(start, options_);
    if (!name.is_none()) options_.name = name.cast<std::string>();
    options_.gating = gating;
    options_.wait = wait_strategy(wait);
    bus_ = bus_name(bus);
    topic_ = topic;
    Result<Consumer> c = [&] {
      py::gil_scoped_release nogil;
      return Consumer::open(bus_, topic, options_);
    }();
    if (!c) raise(c.error());
    consumer_ = std::make_unique<Consumer>(std::move(*c));
    what_ = "topic '" + topic + "' partition " + std::to_string(partition);
  }
  ~PyConsumer() {
    if (generation_ != fork_generation()) (void)consumer_.release();  // the parent's slot
  }

  Consumer& get() {
    if (!consumer_) throw py::value_error("Consumer: closed");
    if (generation_ != fork_generation())
      raise(Error{0, "Consumer of " + what_ +
                         ": opened by the parent process before fork(); open a new one here"});
    return *consumer_;
  }

  py::object poll(const py::object& timeout) {
    Consumer& c = get();
    raise_pending();
    const std::uint32_t p = c.partition();
    PollResult r = c.poll([&](const Message& m) { one_.assign(m, p); }, 1);
    if (r.status == Status::Empty && !timeout_is_zero(timeout)) {
      const Deadline deadline(timeout, "timeout");
      wait_released(deadline, [&](std::chrono::nanoseconds slice) {
        r = c.poll_wait([&](const Message& m) { one_.assign(m, p); }, 1, slice);
        return r.status != Status::Timeout && r.status != Status::Empty;
      });
    }
    if (r.count == 1) {
      if (r.status == Status::Evicted) {
        pending_ = r.status;
        suspect_ = one_.position;
        raise_pending();
      }
      if (r.status != Status::Ok) pending_ = r.status;
      return py::cast(std::move(one_));
    }
    pending_ = r.status;
    raise_pending();
    return py::none();
  }

  py::list poll_batch(std::uint32_t max, const py::object& timeout) {
    Consumer& c = get();
    raise_pending();
    const std::uint32_t p = c.partition();
    batch_.clear();
    auto handler = [&](const Message& m) { batch_.emplace_back().assign(m, p); };
    PollResult r = c.poll(handler, max);
    if (r.status == Status::Empty && max > 0 && !timeout_is_zero(timeout)) {
      const Deadline deadline(timeout, "timeout");
      wait_released(deadline, [&](std::chrono::nanoseconds slice) {
        r = c.poll_wait(handler, max, slice);
        return r.status != Status::Timeout && r.status != Status::Empty;
      });
    }
    if (r.status == Status::Evicted && !batch_.empty()) {
      suspect_ = batch_.back().position;
      batch_.pop_back();
    }
    if (r.status != Status::Ok) pending_ = r.status;
    if (batch_.empty()) raise_pending();
    py::list out(batch_.size());
    for (std::size_t i = 0; i < batch_.size(); ++i)
      PyList_SET_ITEM(out.ptr(), static_cast<py::ssize_t>(i),
                      py::cast(std::move(batch_[i])).release().ptr());
    return out;
  }

  void seek(const py::object& position, const py::object& time) {
    Consumer& c = get();
    if (position.is_none() == time.is_none())
      raise_invalid("seek: give exactly one of position= and time=");
    std::uint64_t to;
    if (!position.is_none()) {
      const auto p = position.cast<long long>();
      if (p < 0) raise_invalid("position: negative");
      to = static_cast<std::uint64_t>(p);
    } else {
      to = position_at(to_ns(time, "time"), c.partition());
    }
    pending_ = Status::Ok;
    suspect_.reset();
    if (auto ok = c.seek(to); !ok) raise(ok.error());
  }

  void rejoin() {
    if (auto ok = get().rejoin(); !ok) raise(ok.error());
    pending_ = Status::Ok;
    suspect_.reset();
  }

  std::uint64_t position() { return get().position(); }
  std::uint32_t partition() { return get().partition(); }
  py::tuple lost() {
    const LostRange l = get().lost();
    return py::make_tuple(l.from, l.to);
  }
  void close() {
    if (consumer_ && generation_ != fork_generation()) (void)consumer_.release();
    consumer_.reset();
  }

 private:
  static bool timeout_is_zero(const py::object& t) {
    return PyFloat_CheckExact(t.ptr())  ? PyFloat_AS_DOUBLE(t.ptr()) == 0
           : PyLong_CheckExact(t.ptr()) ? PyLong_AsLong(t.ptr()) == 0
                                        : false;
  }

  // The first message stamped at or after ns, found by an observer (a
  // consumer of its own that holds nobody back); none yet: the tail.
  std::uint64_t position_at(std::int64_t ns, std::uint32_t partition) {
    ConsumerOptions o;
    o.partition = partition;
    o.start = ConsumerOptions::Start::Time;
    o.time_ns = ns;
    o.gating = false;
    Result<Consumer> finder = Consumer::open(bus_, topic_, o);
    if (!finder) raise(finder.error());
    return finder->position();
  }

  // The status a previous call kept, raised now (and forgotten).
  void raise_pending() {
    const Status s = pending_;
    if (s == Status::Ok || s == Status::Empty || s == Status::Timeout) return;
    pending_ = Status::Ok;
    Consumer& c = *consumer_;
    switch (s) {
      case Status::Lagged:
        raise_lagged("poll on " + what_, c.lost().from, c.lost().to);
      case Status::Corrupt:
        raise_corrupt("poll on " + what_, c.position());
      case Status::Evicted: {
        std::string w = "poll on " + what_;
        if (suspect_)
          w += " (the message at position " + std::to_string(*suspect_) +
               " was dropped: it may have been overwritten while read)";
        suspect_.reset();
        raise_status(s, w);
      }
      default:
        raise_status(s, "poll on " + what_);
    }
  }

  std::string bus_, topic_, what_;
  ConsumerOptions options_;
  std::uint64_t generation_;
  std::unique_ptr<Consumer> consumer_;
  PyMessage one_;
  std::vector<PyMessage> batch_;
  Status pending_ = Status::Ok;
  std::optional<std::uint64_t> suspect_;
};

void bind_consumer(py::module_& m) {
  py::class_<PyConsumer>(m, "Consumer", R"(Reads one partition of a topic with a cursor of its own.

Consumer(topic, bus=None, partition=0, start='latest', name=None, gating=True,
         wait='futex')
start: 'latest', 'earliest', a position (int), or a time (datetime,
numpy.datetime64, pandas.Timestamp); on a durable topic 'earliest', old
positions and times are read from the segment files, then the ring.
name: a durable named cursor (resumes where it stopped; start applies when new).
gating=False: an observer that never holds producers back (it may get Lagged).
wait: how a blocking poll waits: 'futex' (sleeps; the default), 'spin_yield',
'busy_spin'. Iterating (`for msg in consumer`) polls for ever.)")
      .def(py::init<const std::string&, const py::object&, std::uint32_t, const py::object&,
                    const py::object&, bool, const std::string&>(),
           py::arg("topic"), py::kw_only(), py::arg("bus") = py::none(), py::arg("partition") = 0,
           py::arg("start") = "latest", py::arg("name") = py::none(), py::arg("gating") = true,
           py::arg("wait") = "futex")
      .def("poll", &PyConsumer::poll, py::arg("timeout") = py::none(),
           R"(The next message, or None after timeout seconds (None: wait for ever; 0: never
wait). Raises Lagged (with the lost range; the cursor moved past it), Corrupt,
Evicted.)")
      .def("poll_batch", &PyConsumer::poll_batch, py::arg("max_n") = 64, py::arg("timeout") = 0,
           "Up to max_n messages as a list; waits up to timeout seconds for the first.")
      .def("seek", &PyConsumer::seek, py::kw_only(), py::arg("position") = py::none(),
           py::arg("time") = py::none(),
           "Moves the cursor to a frame boundary, or to the first message stamped at or after "
           "time (the tail when none is).")
      .def("rejoin", &PyConsumer::rejoin, "After Evicted: joins again at the tail.")
      .def_property_readonly("position", &PyConsumer::position, "The next position to read.")
      .def_property_readonly("partition", &PyConsumer::partition)
      .def_property_readonly("lost", &PyConsumer::lost, "(from, to) of the last Lagged.")
      .def("close", &PyConsumer::close, "Frees the cursor slot (a named cursor keeps its place).")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", [](PyConsumer& c) { return c.poll(py::none()); })
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyConsumer& c, const py::object&, const py::object&, const py::object&) {
        c.close();
        return false;
      });
}

}  // namespace shmbus::python
