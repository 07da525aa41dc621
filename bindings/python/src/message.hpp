// message.hpp — a received message as Python sees it.
//
// Memory safety: poll copies each message out of shared memory inside the
// consumer's protection window (in the poll handler, where the C++ library
// guarantees the frame is intact), into storage the Python object owns.
// memoryviews and NumPy arrays made from a message keep the message alive
// and view that storage, so no view can ever show bytes a producer wrote
// later, none can outlive what it views, and none can hold producers back.
// Zero-copy views into the ring itself would need either (a) revoking
// exported buffers, which Python's buffer protocol cannot do (a memoryview
// or array keeps its pointer), or (b) pinning the consumer's cursor while any
// view lives, which lets one forgotten object stall every `block` producer.
// The copy is one memcpy of the payload, made while the frame is hot in cache.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "bindings.hpp"
#include "shmbus/message.hpp"

namespace shmbus::python {

// Bytes with a small inline buffer (most payloads), else on the heap.
class OwnedBytes {
 public:
  static constexpr std::size_t kInline = 128;
  OwnedBytes() = default;
  OwnedBytes(const OwnedBytes& o) { assign(o.span()); }
  OwnedBytes& operator=(const OwnedBytes& o) {
    if (this != &o) assign(o.span());
    return *this;
  }
  OwnedBytes(OwnedBytes&&) noexcept = default;
  OwnedBytes& operator=(OwnedBytes&&) noexcept = default;
  void assign(std::span<const std::byte> b) {
    size_ = b.size();
    if (size_ > kInline) {
      if (capacity_ < size_) {
        heap_ = std::make_unique<std::byte[]>(size_);
        capacity_ = size_;
      }
    }
    if (size_) std::memcpy(data(), b.data(), size_);
  }
  const std::byte* data() const noexcept { return size_ > kInline ? heap_.get() : inline_; }
  std::byte* data() noexcept { return size_ > kInline ? heap_.get() : inline_; }
  std::size_t size() const noexcept { return size_; }
  std::span<const std::byte> span() const noexcept { return {data(), size_}; }

 private:
  std::byte inline_[kInline];
  std::unique_ptr<std::byte[]> heap_;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

struct PyMessage {
  std::uint64_t position = 0;
  std::uint32_t partition = 0;
  std::int64_t timestamp_ns = 0;
  std::string key;
  std::string properties;  // encoded as in the frame (checked when it was read)
  OwnedBytes payload;

  void assign(const Message& m, std::uint32_t p) {
    position = m.position;
    partition = p;
    timestamp_ns = m.timestamp_ns;
    key.assign(m.key);
    const auto props = m.properties.encoded();
    properties.assign(reinterpret_cast<const char*>(props.data()), props.size());
    payload.assign(m.payload);
  }
  PropertyView property_view() const {
    return PropertyView(std::span<const std::byte>(
        reinterpret_cast<const std::byte*>(properties.data()), properties.size()));
  }
};

// Properties as a dict: int, float, bool, str, bytes.
py::dict properties_dict(const PropertyView& v);

}  // namespace shmbus::python
