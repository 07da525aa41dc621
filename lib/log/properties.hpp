// lib/log/properties.hpp — writing and checking the typed properties of a
// frame, in the encoding shmbus/message.hpp gives (PropertyView reads it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "shmbus/message.hpp"

namespace shmbus::log {

// Bytes of the encoding of `props`, or nullopt when a name, a value or the
// count is too large for it.
std::optional<std::uint64_t> encoded_size(std::span<const Property> props) noexcept;
// Writes the encoding (encoded_size bytes) at `at`.
void encode(std::span<const Property> props, std::byte* at) noexcept;
// Whether `bytes` (a private copy: a writer cannot change it meanwhile) is
// exactly one valid encoding: every entry inside it, of a known type, a
// fixed-size value of its size, a Bool 0 or 1.
bool valid_encoding(std::span<const std::byte> bytes) noexcept;

}  // namespace shmbus::log
