// bindings.hpp — what the pieces of the `_shmbus` extension share: errors
// as shmbus.errors exceptions, times, deadlines and waiting with the GIL
// released, and the fork generation.
//
// The GIL: calls that may wait (poll, publish on a full `block` ring,
// wait_durable) first try once with the GIL held (the common case costs no
// release), then wait with it released in slices of kWaitSlice, taking it
// back between slices to run Python's signal handlers, so that Ctrl-C raises
// KeyboardInterrupt within a slice and other Python threads run meanwhile.
//
// fork(): a child inherits the parent's Producer and Consumer objects, whose
// slots belong to the parent. They refuse use in the child, and the child's
// exit (normal or not) never frees them: their C++ objects are leaked there.
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "shmbus/options.hpp"
#include "shmbus/status.hpp"

namespace shmbus::python {

namespace py = pybind11;

// errors.cpp
void load_errors();
[[noreturn]] void raise(const Error& e);
// A status that ends an operation on `what` (Full, Timeout, Revoked, ...).
[[noreturn]] void raise_status(Status s, const std::string& what);
[[noreturn]] void raise_lagged(const std::string& what, std::uint64_t from, std::uint64_t to);
[[noreturn]] void raise_corrupt(const std::string& what, std::uint64_t position);
[[noreturn]] void raise_invalid(const std::string& message);  // shmbus.InvalidArgument

// str(h) for messages.
inline std::string text(py::handle h) {
  return py::str(py::reinterpret_borrow<py::object>(h)).cast<std::string>();
}

// time.cpp: CLOCK_REALTIME ns from an int, datetime or numpy.datetime64.
std::int64_t to_ns(py::handle t, const char* name);
py::object from_ns(std::int64_t ns);  // an aware UTC datetime

// consumer.cpp: a `start` argument ('latest', 'earliest', a position, a time).
void parse_start(py::handle start, ConsumerOptions& o);

// The bus: the argument, else $SHMBUS_BUS, else "default" (as the tool).
std::string bus_name(const py::object& bus);

// module.cpp: bumped in every forked child.
std::uint64_t fork_generation() noexcept;

inline constexpr std::chrono::milliseconds kWaitSlice{20};

// A timeout argument: None waits for ever, else seconds >= 0.
class Deadline {
 public:
  Deadline(const py::object& timeout, const char* name);
  bool forever() const noexcept { return !at_; }
  bool zero() const noexcept { return zero_; }
  bool passed() const noexcept { return at_ && std::chrono::steady_clock::now() >= *at_; }
  // The next slice: kWaitSlice, or less before the deadline.
  std::chrono::nanoseconds slice() const noexcept;

 private:
  std::optional<std::chrono::steady_clock::time_point> at_;
  bool zero_ = false;
};

// Runs attempt(slice) with the GIL released until it returns true, the
// deadline passes (false) or a signal handler raises (error_already_set).
template <class F>
bool wait_released(const Deadline& deadline, F&& attempt) {
  for (;;) {
    bool done;
    {
      py::gil_scoped_release nogil;
      done = attempt(deadline.slice());
    }
    if (done) return true;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (deadline.passed()) return false;
  }
}

void bind_message(py::module_& m);
void bind_producer(py::module_& m);
void bind_consumer(py::module_& m);
void bind_topic(py::module_& m);
void bind_reader(py::module_& m);

}  // namespace shmbus::python
