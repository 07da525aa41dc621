// shmbus/message.hpp — a received message, and the typed properties a frame
// may carry (JMS/AMQP "properties", Kafka "headers"): name -> string, int64,
// double, bool or bytes.
#pragma once

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace shmbus {

enum class PropertyType : std::uint8_t { String = 1, Int64 = 2, Double = 3, Bool = 4, Bytes = 5 };

// A typed value. Strings and bytes are views: of the caller's memory when
// publishing, of the frame (valid inside the poll handler) when received.
class PropertyValue {
 public:
  PropertyValue(std::string_view s) noexcept : type_(PropertyType::String), text_(s) {}
  PropertyValue(const char* s) noexcept : PropertyValue(std::string_view(s)) {}
  PropertyValue(const std::string& s) noexcept : PropertyValue(std::string_view(s)) {}
  template <std::integral T>
  requires(!std::same_as<T, bool>) PropertyValue(T v)
  noexcept : type_(PropertyType::Int64), bits_(static_cast<std::uint64_t>(v)) {}
  PropertyValue(double v) noexcept
      : type_(PropertyType::Double), bits_(std::bit_cast<std::uint64_t>(v)) {}
  PropertyValue(bool v) noexcept : type_(PropertyType::Bool), bits_(v ? 1 : 0) {}
  static PropertyValue bytes(std::span<const std::byte> b) noexcept {
    return {PropertyType::Bytes, {reinterpret_cast<const char*>(b.data()), b.size()}};
  }

  PropertyType type() const noexcept { return type_; }
  // Each accessor answers for its own type only.
  std::optional<std::string_view> string() const noexcept {
    return type_ == PropertyType::String ? std::optional(text_) : std::nullopt;
  }
  std::optional<std::int64_t> int64() const noexcept {
    return type_ == PropertyType::Int64 ? std::optional(static_cast<std::int64_t>(bits_))
                                        : std::nullopt;
  }
  std::optional<double> float64() const noexcept {
    return type_ == PropertyType::Double ? std::optional(std::bit_cast<double>(bits_))
                                         : std::nullopt;
  }
  std::optional<bool> boolean() const noexcept {
    return type_ == PropertyType::Bool ? std::optional(bits_ != 0) : std::nullopt;
  }
  std::optional<std::span<const std::byte>> bytes() const noexcept {
    if (type_ != PropertyType::Bytes) return std::nullopt;
    return std::span<const std::byte>(reinterpret_cast<const std::byte*>(text_.data()),
                                      text_.size());
  }
  // The encoded value's bytes (String and Bytes: the text; the others: 8 or 1).
  std::size_t encoded_size() const noexcept {
    switch (type_) {
      case PropertyType::String:
      case PropertyType::Bytes:
        return text_.size();
      case PropertyType::Bool:
        return 1;
      default:
        return 8;
    }
  }
  bool operator==(const PropertyValue& o) const noexcept {
    if (type_ != o.type_) return false;
    return type_ == PropertyType::String || type_ == PropertyType::Bytes ? text_ == o.text_
                                                                         : bits_ == o.bits_;
  }

 private:
  friend class PropertyView;
  PropertyValue(PropertyType t, std::string_view text) noexcept : type_(t), text_(text) {}
  PropertyValue(PropertyType t, std::uint64_t bits) noexcept : type_(t), bits_(bits) {}
  PropertyType type_;
  std::string_view text_{};
  std::uint64_t bits_ = 0;
};

struct Property {
  std::string_view name;
  PropertyValue value;
};

// The encoding of a frame's properties (lib/log/layout.hpp):
//   u16 count, then count x { u8 type, u8 name_len, u16 value_len, name, value }
// value: String, Bytes: value_len bytes; Int64, Double: 8 bytes,
// little-endian (a double's IEEE 754 bits); Bool: 1 byte, 0 or 1.
inline constexpr std::size_t kPropertyEntryHeaderBytes = 4;
inline constexpr std::size_t kMaxPropertyNameBytes = 255;
inline constexpr std::size_t kMaxPropertyValueBytes = 65535;

// A read-only walk over encoded properties that were checked when the frame
// was validated (every entry inside the encoding, every type known, every
// fixed-size value of its size): iterating cannot leave the frame.
class PropertyView {
 public:
  PropertyView() = default;
  explicit PropertyView(std::span<const std::byte> encoded) : bytes_(encoded) {}

  class iterator {
   public:
    iterator(const std::byte* p, std::uint16_t left) : p_(p), left_(left) {}
    Property operator*() const {
      const auto type = static_cast<PropertyType>(p_[0]);
      const auto n = static_cast<std::uint8_t>(p_[1]);
      std::uint16_t v;
      std::memcpy(&v, p_ + 2, 2);
      const char* s = reinterpret_cast<const char*>(p_ + kPropertyEntryHeaderBytes);
      std::string_view name{s, n};
      if (type == PropertyType::String || type == PropertyType::Bytes)
        return {name, PropertyValue(type, std::string_view{s + n, v})};
      std::uint64_t bits = 0;
      std::memcpy(&bits, s + n, v);  // 8, or 1 for Bool (little-endian)
      return {name, PropertyValue(type, bits)};
    }
    iterator& operator++() {
      const auto n = static_cast<std::uint8_t>(p_[1]);
      std::uint16_t v;
      std::memcpy(&v, p_ + 2, 2);
      p_ += kPropertyEntryHeaderBytes + n + v;
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
  // The encoding itself (to keep a copy: PropertyView over the copy reads it).
  std::span<const std::byte> encoded() const { return bytes_; }
  // Empty properties begin at end(): their span may be null (a message
  // without properties), and null + 2 is undefined.
  iterator begin() const {
    const std::uint16_t n = size();
    return n == 0 ? end() : iterator{bytes_.data() + 2, n};
  }
  iterator end() const { return {nullptr, 0}; }
  // The first property of that name.
  std::optional<PropertyValue> find(std::string_view name) const {
    for (Property p : *this)
      if (p.name == name) return p.value;
    return std::nullopt;
  }

 private:
  std::span<const std::byte> bytes_;
};

// Valid only inside the poll handler that received it.
struct Message {
  std::uint64_t position = 0;     // logical byte offset of the frame in its partition
  std::int64_t timestamp_ns = 0;  // CLOCK_REALTIME at publish; 0: its producer stamped nothing
  std::string_view key;           // empty when the frame has none
  PropertyView properties;
  std::span<const std::byte> payload;
};

}  // namespace shmbus
