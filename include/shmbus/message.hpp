// shmbus/message.hpp — a received message, and the string->string headers a
// frame may carry (JMS/AMQP "properties", Kafka "headers").
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

namespace shmbus {

struct Property {
  std::string_view name;
  std::string_view value;
};

// A read-only walk over encoded properties that were bounds-checked when the
// frame was validated: iterating cannot leave the frame.
//   encoding: u16 count, then count x { u16 name_len, u16 value_len, name, value }
class PropertyView {
 public:
  PropertyView() = default;
  explicit PropertyView(std::span<const std::byte> encoded) : bytes_(encoded) {}

  class iterator {
   public:
    iterator(const std::byte* p, std::uint16_t left) : p_(p), left_(left) {}
    Property operator*() const {
      std::uint16_t n, v;
      std::memcpy(&n, p_, 2);
      std::memcpy(&v, p_ + 2, 2);
      const char* s = reinterpret_cast<const char*>(p_ + 4);
      return {{s, n}, {s + n, v}};
    }
    iterator& operator++() {
      Property pr = **this;
      p_ += 4 + pr.name.size() + pr.value.size();
      --left_;
      return *this;
    }
    bool operator==(const iterator& o) const { return left_ == o.left_; }

   private:
    const std::byte* p_;
    std::uint16_t left_;
  };

  std::uint16_t size() const {
    std::uint16_t c = 0;
    if (bytes_.size() >= 2) std::memcpy(&c, bytes_.data(), 2);
    return c;
  }
  bool empty() const { return size() == 0; }
  // Empty properties begin at end(): their span may be null (a message
  // without properties), and null + 2 is undefined.
  iterator begin() const {
    const std::uint16_t n = size();
    return n == 0 ? end() : iterator{bytes_.data() + 2, n};
  }
  iterator end() const { return {nullptr, 0}; }
  std::optional<std::string_view> find(std::string_view name) const {
    for (Property p : *this)
      if (p.name == name) return p.value;
    return std::nullopt;
  }

 private:
  std::span<const std::byte> bytes_;
};

// Valid only inside the poll handler that received it.
struct Message {
  std::uint64_t position = 0;  // logical byte offset of the frame in its partition
  std::int64_t timestamp_ns = 0;
  std::string_view key;  // empty when the frame has none
  PropertyView properties;
  std::span<const std::byte> payload;
};

}  // namespace shmbus
