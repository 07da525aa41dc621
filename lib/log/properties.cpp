#include "log/properties.hpp"

#include <cstring>

namespace shmbus::log {
namespace {

// The value_len a fixed-size type must have; 0 for the variable ones.
std::uint16_t fixed_size(PropertyType t) noexcept {
  switch (t) {
    case PropertyType::Int64:
    case PropertyType::Double:
      return 8;
    case PropertyType::Bool:
      return 1;
    default:
      return 0;
  }
}

bool known(std::uint8_t t) noexcept {
  return t >= static_cast<std::uint8_t>(PropertyType::String) &&
         t <= static_cast<std::uint8_t>(PropertyType::Bytes);
}

}  // namespace

std::optional<std::uint64_t> encoded_size(std::span<const Property> props) noexcept {
  if (props.size() > 0xffff) return std::nullopt;
  std::uint64_t n = 2;
  for (const Property& p : props) {
    if (p.name.size() > kMaxPropertyNameBytes || p.value.encoded_size() > kMaxPropertyValueBytes)
      return std::nullopt;
    n += kPropertyEntryHeaderBytes + p.name.size() + p.value.encoded_size();
  }
  return n;
}

void encode(std::span<const Property> props, std::byte* at) noexcept {
  const auto count = static_cast<std::uint16_t>(props.size());
  std::memcpy(at, &count, 2);
  at += 2;
  for (const Property& p : props) {
    const PropertyValue& v = p.value;
    const auto value_len = static_cast<std::uint16_t>(v.encoded_size());
    at[0] = static_cast<std::byte>(v.type());
    at[1] = static_cast<std::byte>(p.name.size());
    std::memcpy(at + 2, &value_len, 2);
    at += kPropertyEntryHeaderBytes;
    std::memcpy(at, p.name.data(), p.name.size());
    at += p.name.size();
    std::uint64_t bits = 0;
    std::span<const std::byte> text;
    switch (v.type()) {
      case PropertyType::String:
        text = std::as_bytes(std::span(v.string()->data(), v.string()->size()));
        break;
      case PropertyType::Bytes:
        text = *v.bytes();
        break;
      case PropertyType::Int64:
        bits = static_cast<std::uint64_t>(*v.int64());
        break;
      case PropertyType::Double:
        bits = std::bit_cast<std::uint64_t>(*v.float64());
        break;
      case PropertyType::Bool:
        bits = *v.boolean() ? 1 : 0;
        break;
    }
    if (!text.empty()) std::memcpy(at, text.data(), text.size());
    if (fixed_size(v.type()) != 0) std::memcpy(at, &bits, value_len);
    at += value_len;
  }
}

bool valid_encoding(std::span<const std::byte> bytes) noexcept {
  if (bytes.size() < 2) return false;
  std::uint16_t count;
  std::memcpy(&count, bytes.data(), 2);
  std::uint64_t used = 2;
  for (std::uint16_t i = 0; i < count; ++i) {
    if (bytes.size() - used < kPropertyEntryHeaderBytes) return false;
    const std::byte* e = bytes.data() + used;
    const auto type = static_cast<std::uint8_t>(e[0]);
    const auto name_len = static_cast<std::uint8_t>(e[1]);
    std::uint16_t value_len;
    std::memcpy(&value_len, e + 2, 2);
    if (!known(type)) return false;
    const std::uint16_t fixed = fixed_size(static_cast<PropertyType>(type));
    if (fixed != 0 && value_len != fixed) return false;
    used += kPropertyEntryHeaderBytes;
    if (bytes.size() - used < std::uint64_t{name_len} + value_len) return false;
    if (static_cast<PropertyType>(type) == PropertyType::Bool &&
        static_cast<std::uint8_t>(bytes[used + name_len]) > 1)
      return false;
    used += std::uint64_t{name_len} + value_len;
  }
  return used == bytes.size();
}

}  // namespace shmbus::log
