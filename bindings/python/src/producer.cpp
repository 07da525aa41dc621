// producer.cpp — shmbus.Producer and shmbus.Claim.
//
// publish() takes any C-contiguous buffer (bytes, bytearray, memoryview,
// NumPy arrays) without a copy of its own: the one copy is into the ring.
// On a full `block` ring it waits (GIL released, in slices) up to `timeout`.
//
// claim(n) lends n bytes of the ring as a writable memoryview, to fill in a
// `with` block that commits on exit (aborts on an exception). At the end the
// memoryview is released, so a kept reference raises on use instead of
// writing into a published frame; and if an array or view made from it is
// still alive then (it could write into the ring after commit), the claim is
// aborted and BufferError raised: nothing half-written is ever published.
#include <sched.h>

#include <memory>
#include <thread>
#include <vector>

#include "bindings.hpp"
#include "shmbus/producer.hpp"

namespace shmbus::python {

namespace {

// A C-contiguous buffer held for the length of a call.
class HeldBuffer {
 public:
  HeldBuffer(py::handle obj, const char* name) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_C_CONTIGUOUS) != 0) {
      PyErr_Clear();
      throw py::type_error(std::string(name) +
                           ": expected a C-contiguous buffer (bytes, "
                           "bytearray, memoryview, numpy array), got " +
                           text(py::type::handle_of(obj).attr("__name__")));
    }
  }
  ~HeldBuffer() { PyBuffer_Release(&view_); }
  HeldBuffer(const HeldBuffer&) = delete;
  HeldBuffer& operator=(const HeldBuffer&) = delete;
  std::span<const std::byte> span() const {
    return {static_cast<const std::byte*>(view_.buf), static_cast<std::size_t>(view_.len)};
  }

 private:
  Py_buffer view_{};
};

// The key (str or bytes) and properties (a dict) of one call; their views
// point into the Python objects, alive for the call.
class Extras {
 public:
  Extras(const py::object& key, const py::object& headers) {
    if (!key.is_none()) {
      if (PyUnicode_Check(key.ptr())) {
        Py_ssize_t n;
        const char* s = PyUnicode_AsUTF8AndSize(key.ptr(), &n);
        if (!s) throw py::error_already_set();
        key_ = {s, static_cast<std::size_t>(n)};
      } else if (PyBytes_Check(key.ptr())) {
        key_ = {PyBytes_AS_STRING(key.ptr()),
                static_cast<std::size_t>(PyBytes_GET_SIZE(key.ptr()))};
      } else {
        throw py::type_error("key: expected str or bytes, got " +
                             text(py::type::handle_of(key).attr("__name__")));
      }
      if (key_.empty()) raise_invalid("key: empty (use None for no key)");
    }
    if (headers.is_none()) return;
    if (!PyDict_Check(headers.ptr()))
      throw py::type_error("headers: expected a dict of str to int, float, bool, str or bytes");
    for (auto [k, v] : py::reinterpret_borrow<py::dict>(headers)) {
      if (!PyUnicode_Check(k.ptr())) throw py::type_error("headers: names must be str");
      Py_ssize_t n;
      const char* s = PyUnicode_AsUTF8AndSize(k.ptr(), &n);
      if (!s) throw py::error_already_set();
      const std::string_view name(s, static_cast<std::size_t>(n));
      if (PyBool_Check(v.ptr())) {
        props_.push_back({name, PropertyValue(v.ptr() == Py_True)});
      } else if (PyLong_Check(v.ptr())) {
        int overflow = 0;
        const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
        if (overflow) raise_invalid("headers: '" + std::string(name) + "' does not fit in int64");
        props_.push_back({name, PropertyValue(static_cast<std::int64_t>(x))});
      } else if (PyFloat_Check(v.ptr())) {
        props_.push_back({name, PropertyValue(PyFloat_AS_DOUBLE(v.ptr()))});
      } else if (PyUnicode_Check(v.ptr())) {
        Py_ssize_t m;
        const char* t = PyUnicode_AsUTF8AndSize(v.ptr(), &m);
        if (!t) throw py::error_already_set();
        props_.push_back({name, PropertyValue(std::string_view(t, static_cast<std::size_t>(m)))});
      } else if (PyBytes_Check(v.ptr())) {
        props_.push_back({name, PropertyValue::bytes(
                                    {reinterpret_cast<const std::byte*>(PyBytes_AS_STRING(v.ptr())),
                                     static_cast<std::size_t>(PyBytes_GET_SIZE(v.ptr()))})});
      } else {
        throw py::type_error("headers: '" + std::string(name) + "' is a " +
                             text(py::type::handle_of(v).attr("__name__")) +
                             "; values must be int, float, bool, str or bytes");
      }
    }
  }
  bool empty() const noexcept { return key_.empty() && props_.empty(); }
  std::string_view key() const noexcept { return key_; }
  std::span<const Property> properties() const noexcept { return props_; }

 private:
  std::string_view key_;
  std::vector<Property> props_;
};

// Retries try_once (GIL released) for up to a slice: spin a little, then yield.
template <class F>
Status retry_for(std::chrono::nanoseconds slice, F&& try_once) {
  const auto until = std::chrono::steady_clock::now() + slice;
  for (std::uint32_t i = 0;; ++i) {
    const Status s = try_once();
    if (s != Status::Full) return s;
    if (std::chrono::steady_clock::now() >= until) return s;
    if (i > 64)
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    else
      sched_yield();
  }
}

WaitStrategy wait_strategy(const std::string& s) {
  if (s == "busy_spin") return WaitStrategy::BusySpin;
  if (s == "spin_yield") return WaitStrategy::SpinYield;
  if (s == "futex") return WaitStrategy::Futex;
  raise_invalid("wait: expected 'busy_spin', 'spin_yield' or 'futex', got '" + s + "'");
}

}  // namespace

class PyProducer {
 public:
  PyProducer(const std::string& topic, const py::object& bus, std::uint32_t partition,
             bool timestamps, const std::string& wait)
      : topic_(topic), generation_(fork_generation()) {
    ProducerOptions o;
    o.partition = partition;
    o.timestamps = timestamps;
    o.wait = wait_strategy(wait);
    const std::string b = bus_name(bus);
    Result<Producer> p = [&] {
      py::gil_scoped_release nogil;  // open may wait for a slot changing owners
      return Producer::open(b, topic, o);
    }();
    if (!p) raise(p.error());
    producer_ = std::make_unique<Producer>(std::move(*p));
    what_ = "topic '" + topic + "' partition " + std::to_string(partition);
  }
  ~PyProducer() {
    if (generation_ != fork_generation()) (void)producer_.release();  // the parent's slot
  }

  Producer& get() {
    if (!producer_) throw py::value_error("Producer: closed");
    if (generation_ != fork_generation())
      raise(Error{0, "Producer of " + what_ +
                         ": opened by the parent process before fork(); open a new one here"});
    return *producer_;
  }
  const std::string& what() const noexcept { return what_; }

  void publish(py::handle data, const py::object& key, const py::object& headers,
               const py::object& timeout) {
    Producer& p = get();
    const HeldBuffer buffer(data, "data");
    const auto payload = buffer.span();
    Status s;
    if (key.is_none() && headers.is_none()) {
      s = p.offer(payload);
      if (s == Status::Full) s = wait_for_room(timeout, [&] { return p.offer(payload); });
    } else {
      const Extras extras(key, headers);
      auto once = [&] { return p.offer(payload, extras.key(), extras.properties()); };
      s = once();
      if (s == Status::Full) s = wait_for_room(timeout, once);
    }
    if (s != Status::Ok) fail(s, payload.size());
  }

  template <class F>
  Status wait_for_room(const py::object& timeout, F&& once) {
    const Deadline deadline(timeout, "timeout");
    if (deadline.zero()) return Status::Full;
    Status s = Status::Full;
    wait_released(deadline, [&](std::chrono::nanoseconds slice) {
      s = retry_for(slice, once);
      return s != Status::Full;
    });
    return s;
  }

  [[noreturn]] void fail(Status s, std::size_t bytes) {
    if (s == Status::TooLarge)
      raise_invalid("data: " + std::to_string(bytes) + " bytes; the largest payload " + what_ +
                    " takes is " + std::to_string(producer_->max_payload()));
    raise_status(s, "publish to " + what_);
  }

  void wait_durable(const py::object& timeout) {
    Producer& p = get();
    const Deadline deadline(timeout, "timeout");
    Status s = p.wait_durable(std::chrono::nanoseconds(0));
    if (s == Status::Timeout && !deadline.zero())
      wait_released(deadline, [&](std::chrono::nanoseconds slice) {
        s = p.wait_durable(slice);
        return s != Status::Timeout;
      });
    if (s != Status::Ok) raise_status(s, "wait_durable on " + what_);
  }

  // From a destructor: never throws; nothing to do for a closed producer
  // (its claims went with it) or one of the parent's.
  void abort_quietly(Claim& c) noexcept {
    if (producer_ && generation_ == fork_generation()) (void)producer_->abort(c);
  }

  void close() {
    if (producer_ && generation_ != fork_generation()) (void)producer_.release();
    producer_.reset();
  }

 private:
  std::string topic_;
  std::string what_;
  std::uint64_t generation_;
  std::unique_ptr<Producer> producer_;
};

// The writable buffer a claim lends: exported once, to the memoryview the
// claim hands out (which it releases at the end).
struct ClaimBuffer {
  std::span<std::byte> bytes;
  bool exported = false;
};

class PyClaim {
 public:
  PyClaim(py::object producer, std::size_t n, const py::object& key, const py::object& headers)
      : owner_(std::move(producer)) {
    PyProducer& p = owner_.cast<PyProducer&>();
    const Extras extras(key, headers);
    const Status s = extras.empty() ? p.get().claim(n, claim_)
                                    : p.get().claim(n, extras.key(), extras.properties(), claim_);
    if (s != Status::Ok) {
      if (s == Status::Invalid) raise_invalid("claim on " + p.what() + ": a claim is already open");
      p.fail(s, n);
    }
    open_ = true;
    py::object buffer = py::cast(ClaimBuffer{claim_.payload});
    view_ = py::reinterpret_steal<py::object>(PyMemoryView_FromObject(buffer.ptr()));
    if (!view_) throw py::error_already_set();
  }
  ~PyClaim() {
    if (open_) owner_.cast<PyProducer&>().abort_quietly(claim_);
  }
  PyClaim(const PyClaim&) = delete;
  PyClaim& operator=(const PyClaim&) = delete;

  py::object view() const {
    if (!open_) throw py::value_error("Claim: already committed or aborted");
    return view_;
  }
  std::uint64_t position() const noexcept { return claim_.position; }

  void commit() {
    PyProducer& p = owner_.cast<PyProducer&>();
    if (!open_) throw py::value_error("Claim: already committed or aborted");
    try {
      view_.attr("release")();
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_BufferError)) throw;
      abort();
      throw py::buffer_error("claim at position " + std::to_string(claim_.position) + " on " +
                             p.what() +
                             ": an array or view made from its buffer is still alive, and could "
                             "write into the ring after commit; the claim was aborted (nothing "
                             "published). Let such views go before the claim ends");
    }
    open_ = false;
    if (const Status s = p.get().commit(claim_); s != Status::Ok)
      raise_status(s, "commit to " + p.what());
  }

  void abort() {
    if (!open_) return;
    open_ = false;
    try {
      view_.attr("release")();
    } catch (py::error_already_set&) {
      // Views of an aborted claim write into padding nobody reads.
    }
    if (const Status s = owner_.cast<PyProducer&>().get().abort(claim_);
        s != Status::Ok && s != Status::Revoked)
      raise_status(s, "abort on " + owner_.cast<PyProducer&>().what());
  }

 private:
  py::object owner_;  // the PyProducer, kept alive while the claim is open
  Claim claim_;
  bool open_ = false;
  py::object view_;
};

void bind_producer(py::module_& m) {
  py::class_<ClaimBuffer>(m, "_ClaimBuffer", py::buffer_protocol()).def_buffer([](ClaimBuffer& b) {
    if (b.exported) throw py::buffer_error("a claim's buffer is lent once, to Claim.buffer");
    b.exported = true;
    return py::buffer_info(b.bytes.data(), 1, py::format_descriptor<std::uint8_t>::format(), 1,
                           {static_cast<py::ssize_t>(b.bytes.size())}, {1}, false);
  });

  py::class_<PyClaim>(m, "Claim", R"(Space claimed in the ring: fill `buffer`, then commit.

Use it in a with block: it commits on exit and aborts on an exception.)")
      .def_property_readonly("buffer", &PyClaim::view, "The claimed bytes, a writable memoryview.")
      .def_property_readonly("position", &PyClaim::position)
      .def("commit", &PyClaim::commit, "Publishes the claim.")
      .def("abort", &PyClaim::abort, "Gives the space up (it becomes padding).")
      .def("__enter__", &PyClaim::view)
      .def("__exit__",
           [](PyClaim& c, const py::object& type, const py::object&, const py::object&) {
             if (type.is_none())
               c.commit();
             else
               c.abort();
             return false;
           });

  py::class_<PyProducer>(m, "Producer", R"(Publishes into one partition of a topic.

Producer(topic, bus=None, partition=0, timestamps=True, wait='spin_yield')
bus: None is $SHMBUS_BUS, else 'default'. One thread at a time per object.)")
      .def(py::init<const std::string&, const py::object&, std::uint32_t, bool,
                    const std::string&>(),
           py::arg("topic"), py::kw_only(), py::arg("bus") = py::none(), py::arg("partition") = 0,
           py::arg("timestamps") = true, py::arg("wait") = "spin_yield")
      .def("publish", &PyProducer::publish, py::arg("data"), py::arg("key") = py::none(),
           py::arg("headers") = py::none(), py::kw_only(), py::arg("timeout") = py::none(),
           R"(Publishes data (a C-contiguous buffer), with an optional key (str or bytes) and
headers (a dict of str to int, float, bool, str or bytes). On a full `block` ring
waits up to timeout seconds (None: for ever; 0: not at all), then raises Full.)")
      .def(
          "claim",
          [](py::object self, std::size_t n, const py::object& key, const py::object& headers) {
            return std::make_unique<PyClaim>(std::move(self), n, key, headers);
          },
          py::arg("size"), py::arg("key") = py::none(), py::arg("headers") = py::none(),
          "Claims size bytes of the ring (zero-copy); see Claim.")
      .def("wait_durable", &PyProducer::wait_durable, py::arg("timeout") = py::none(),
           "Durable topics: waits until everything this producer published is on disk as the "
           "topic's fsync policy says. Raises Timeout, SpillFailed, InvalidArgument.")
      .def_property_readonly("max_payload", [](PyProducer& p) { return p.get().max_payload(); })
      .def_property_readonly("partition", [](PyProducer& p) { return p.get().partition(); })
      .def("close", &PyProducer::close, "Leaves the producer slot.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyProducer& p, const py::object&, const py::object&, const py::object&) {
        p.close();
        return false;
      });
}

}  // namespace shmbus::python
