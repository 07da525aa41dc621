// time.cpp — times (shmbus._time), deadlines and the bus name.
#include <cmath>
#include <cstdlib>

#include "bindings.hpp"

namespace shmbus::python {

std::int64_t to_ns(py::handle t, const char* name) {
  if (PyLong_CheckExact(t.ptr())) return t.cast<std::int64_t>();
  static PyObject* convert =
      py::object(py::module_::import("shmbus._time").attr("to_ns")).release().ptr();
  return py::handle(convert)(t, name).cast<std::int64_t>();
}

py::object from_ns(std::int64_t ns) {
  static PyObject* convert =
      py::object(py::module_::import("shmbus._time").attr("from_ns")).release().ptr();
  return py::handle(convert)(ns);
}

std::string bus_name(const py::object& bus) {
  if (!bus.is_none()) return bus.cast<std::string>();
  const char* env = std::getenv("SHMBUS_BUS");
  return env && *env ? env : "default";
}

Deadline::Deadline(const py::object& timeout, const char* name) {
  if (timeout.is_none()) return;
  const double s = timeout.cast<double>();
  if (!(s >= 0) || !std::isfinite(s))
    raise_invalid(std::string(name) + ": expected None or seconds >= 0, got " +
                  py::repr(timeout).cast<std::string>());
  zero_ = s == 0;
  at_ = std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(s));
}

std::chrono::nanoseconds Deadline::slice() const noexcept {
  if (!at_) return kWaitSlice;
  const auto left = *at_ - std::chrono::steady_clock::now();
  return std::max<std::chrono::nanoseconds>(std::chrono::nanoseconds(0),
                                            std::min<std::chrono::nanoseconds>(left, kWaitSlice));
}

}  // namespace shmbus::python
