// errors.cpp — the C++ library's errors and statuses as shmbus.errors exceptions.
#include <cerrno>

#include "bindings.hpp"

namespace shmbus::python {

namespace {

// Borrowed from shmbus.errors, which lives as long as the interpreter.
struct Classes {
  PyObject* error;
  PyObject* not_found;
  PyObject* permission_denied;
  PyObject* invalid_argument;
  PyObject* busy;
  PyObject* full;
  PyObject* timeout;
  PyObject* lagged;
  PyObject* corrupt;
  PyObject* evicted;
  PyObject* revoked;
  PyObject* spill_failed;
};
Classes classes;

[[noreturn]] void throw_instance(PyObject* cls, const py::object& instance) {
  PyErr_SetObject(cls, instance.ptr());
  throw py::error_already_set();
}

}  // namespace

void load_errors() {
  py::module_ m = py::module_::import("shmbus.errors");
  auto get = [&](const char* name) { return py::object(m.attr(name)).release().ptr(); };
  classes = {get("Error"),   get("NotFound"), get("PermissionDenied"), get("InvalidArgument"),
             get("Busy"),    get("Full"),     get("Timeout"),          get("Lagged"),
             get("Corrupt"), get("Evicted"),  get("Revoked"),          get("SpillFailed")};
}

void raise(const Error& e) {
  PyObject* cls = classes.error;
  switch (e.code) {
    case ENOENT:
      cls = classes.not_found;
      break;
    case EACCES:
    case EPERM:
      cls = classes.permission_denied;
      break;
    case EINVAL:
    case ERANGE:
    case ENAMETOOLONG:
      cls = classes.invalid_argument;
      break;
    case EBUSY:
      cls = classes.busy;
      break;
    case ETIMEDOUT:
      cls = classes.timeout;
      break;
    default:
      break;
  }
  throw_instance(cls, py::handle(cls)(e.message, e.code));
}

void raise_invalid(const std::string& message) {
  throw_instance(classes.invalid_argument, py::handle(classes.invalid_argument)(message, EINVAL));
}

void raise_status(Status s, const std::string& what) {
  PyObject* cls = classes.error;
  std::string text = what + ": " + to_string(s);
  switch (s) {
    case Status::Full:
      cls = classes.full;
      text = what + ": full (the slowest consumer is a ring behind)";
      break;
    case Status::Timeout:
      cls = classes.timeout;
      text = what + ": timed out";
      break;
    case Status::Invalid:
    case Status::TooLarge:
      cls = classes.invalid_argument;
      break;
    case Status::Evicted:
      cls = classes.evicted;
      text = what + ": evicted by shmbusd (too slow on a block topic); call rejoin()";
      break;
    case Status::Revoked:
      cls = classes.revoked;
      text = what +
             ": the claim was open past the topic's hung_producer_timeout; shmbusd "
             "revoked it and nothing was published";
      break;
    case Status::SpillFailed:
      cls = classes.spill_failed;
      text = what +
             ": the spiller stopped on an error before the message was durable "
             "(`shmbus topic describe` says why)";
      break;
    default:
      break;
  }
  throw_instance(cls, py::handle(cls)(text));
}

void raise_lagged(const std::string& what, std::uint64_t from, std::uint64_t to) {
  throw_instance(classes.lagged,
                 py::handle(classes.lagged)(what + ": lagged: producers overwrote positions [" +
                                                std::to_string(from) + ", " + std::to_string(to) +
                                                ") before they were read",
                                            from, to));
}

void raise_corrupt(const std::string& what, std::uint64_t position) {
  throw_instance(classes.corrupt, py::handle(classes.corrupt)(
                                      what + ": the frame at position " + std::to_string(position) +
                                          " fails validation; seek past it to go on",
                                      position));
}

}  // namespace shmbus::python
