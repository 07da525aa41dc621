// message.cpp — shmbus.Message: a received message that owns its bytes
// (message.hpp says why), readable as a buffer, a memoryview or NumPy arrays.
#include "message.hpp"

#include <pybind11/numpy.h>

namespace shmbus::python {

namespace {

py::bytes as_bytes(std::span<const std::byte> b) {
  return py::bytes(reinterpret_cast<const char*>(b.data()), b.size());
}

// A read-only array over the message's payload, its base the message.
py::array payload_array(const py::object& self, const py::object& dtype_arg,
                        const py::object& shape_arg) {
  const PyMessage& m = self.cast<const PyMessage&>();
  const py::dtype dtype = py::dtype::from_args(dtype_arg);
  const auto item = static_cast<std::size_t>(dtype.itemsize());
  if (item == 0) raise_invalid("dtype: an item of 0 bytes");
  const std::size_t size = m.payload.size();
  if (size % item != 0)
    raise_invalid("dtype: the payload at position " + std::to_string(m.position) + " has " +
                  std::to_string(size) + " bytes, not a multiple of " + text(dtype) + "'s " +
                  std::to_string(item));
  std::vector<py::ssize_t> shape;
  if (shape_arg.is_none()) {
    shape.push_back(static_cast<py::ssize_t>(size / item));
  } else {
    std::size_t n = 1;
    for (py::handle d : py::iter(shape_arg)) {
      const auto v = d.cast<py::ssize_t>();
      if (v < 0) raise_invalid("shape: a negative dimension");
      shape.push_back(v);
      n *= static_cast<std::size_t>(v);
    }
    if (n * item != size)
      raise_invalid("shape: " + py::repr(shape_arg).cast<std::string>() + " of " + text(dtype) +
                    " is " + std::to_string(n * item) + " bytes; the payload has " +
                    std::to_string(size));
  }
  py::array a(dtype, shape, {}, m.payload.data(), self);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

}  // namespace

py::dict properties_dict(const PropertyView& v) {
  py::dict d;
  for (const Property p : v) {
    py::str name(p.name.data(), p.name.size());
    const PropertyValue& x = p.value;
    switch (x.type()) {
      case PropertyType::String:
        d[name] = py::str(x.string()->data(), x.string()->size());
        break;
      case PropertyType::Int64:
        d[name] = py::int_(*x.int64());
        break;
      case PropertyType::Double:
        d[name] = py::float_(*x.float64());
        break;
      case PropertyType::Bool:
        d[name] = py::bool_(*x.boolean());
        break;
      case PropertyType::Bytes:
        d[name] = as_bytes(*x.bytes());
        break;
    }
  }
  return d;
}

void bind_message(py::module_& m) {
  py::class_<PyMessage>(m, "Message", py::buffer_protocol(), R"(A received message.

It owns a copy of its bytes, made while the frame was intact in the ring: it,
and every view or array made from it, stay valid and unchanged for as long as
they live, however far producers have moved on. bytes(msg), memoryview(msg)
and msg.data read the payload; msg.array(dtype) views it as a read-only
NumPy array whose base is the message.)")
      .def_readonly("position", &PyMessage::position,
                    "The frame's position (logical byte offset) in its partition.")
      .def_readonly("partition", &PyMessage::partition)
      .def_readonly("timestamp", &PyMessage::timestamp_ns,
                    "CLOCK_REALTIME ns at publish; 0 when its producer stamped nothing.")
      .def_property_readonly(
          "time",
          [](const PyMessage& self) -> py::object {
            return self.timestamp_ns ? from_ns(self.timestamp_ns) : py::none();
          },
          "The timestamp as an aware UTC datetime (microseconds), None when unstamped.")
      .def_property_readonly(
          "key",
          [](const PyMessage& self) -> py::object {
            if (self.key.empty()) return py::none();
            return py::bytes(self.key);
          },
          "The key as bytes, None when the message has none.")
      .def_property_readonly(
          "headers", [](const PyMessage& self) { return properties_dict(self.property_view()); },
          "The typed properties as a new dict (int, float, bool, str, bytes).")
      .def_property_readonly(
          "data", [](py::object self) { return py::memoryview(self); },
          "The payload as a read-only memoryview (keeps the message alive).")
      .def("array", &payload_array, py::arg("dtype") = py::str("u1"), py::arg("shape") = py::none(),
           "The payload as a read-only NumPy array of dtype (and shape); no copy: its base is "
           "the message. ValueError when the payload is not a whole number of items.")
      .def(
          "copy", [](const PyMessage& self) { return self; },
          "An independent copy (messages already own their bytes: for symmetry with views).")
      .def("__len__", [](const PyMessage& self) { return self.payload.size(); })
      .def("__bytes__", [](const PyMessage& self) { return as_bytes(self.payload.span()); })
      .def("__repr__",
           [](const PyMessage& self) {
             return "<shmbus.Message partition=" + std::to_string(self.partition) +
                    " position=" + std::to_string(self.position) +
                    " size=" + std::to_string(self.payload.size()) + ">";
           })
      .def_buffer([](PyMessage& self) {
        return py::buffer_info(self.payload.data(), 1,
                               py::format_descriptor<std::uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(self.payload.size())}, {1}, true);
      });
}

}  // namespace shmbus::python
