// lib/log/crc32c.hpp — CRC32C (Castagnoli, iSCSI's polynomial 0x1EDC6F41,
// reflected 0x82F63B78): the checksum of the segment files' records, as in
// Kafka's record batches and ext4's metadata. SSE4.2's crc32 instruction
// where the CPU has it (checked once), a byte table otherwise; both give
// the same value, so files move between machines.
#pragma once

#include <cstdint>
#include <span>

namespace shmbus::log {

// The CRC32C of `data`, continuing from `crc` (the value of the bytes
// before it; 0 for none): crc32c(a + b) == crc32c(b, crc32c(a)).
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;

// The table path alone, whatever the CPU (tests compare the two).
std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;

// Whether crc32c() uses the instruction here.
bool crc32c_hardware() noexcept;

}  // namespace shmbus::log
