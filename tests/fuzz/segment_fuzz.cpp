// tests/fuzz/segment_fuzz.cpp — the recovery scan of a segment file
// (lib/log/segment_format.hpp scan_segment), which reads whatever a crash,
// a torn write or a bad disk left.
//
// Input: a segment file's bytes; its base is taken from where the header
// keeps it, so inputs with a valid header reach the batches.
// What must hold: the scan reads nothing outside the input (ASan), accepts
// a prefix of it (a valid header and then whole batches), and that prefix
// alone, followed by zeros, scans to the same batches with a clean end:
// what recovery keeps after truncating is itself a clean file.
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_check.hpp"
#include "log/segment_format.hpp"

using namespace shmbus::log;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::byte> file(reinterpret_cast<const std::byte*>(data),
                                    reinterpret_cast<const std::byte*>(data) + size);
  std::uint64_t base = 0;
  if (size >= 24) std::memcpy(&base, data + 16, 8);
  const SegmentScan s = scan_segment(file, base);
  FUZZ_CHECK(s.valid_bytes <= size);
  FUZZ_CHECK(s.header_ok == (s.valid_bytes >= kSegmentDataAt));
  if (!s.header_ok) {
    FUZZ_CHECK(s.batches == 0 && s.end == base);
    return 0;
  }
  SegmentHeader h;
  std::memcpy(&h, data, sizeof h);
  FUZZ_CHECK(s.end >= base && s.end - base <= h.span);
  FUZZ_CHECK(s.gaps <= s.end - base);
  std::vector<std::byte> kept(file.begin(),
                              file.begin() + static_cast<std::ptrdiff_t>(s.valid_bytes));
  kept.resize(kept.size() + sizeof(BatchHeader));
  const SegmentScan again = scan_segment(kept, base);
  FUZZ_CHECK(again.header_ok && again.stop.empty());
  FUZZ_CHECK(again.batches == s.batches && again.frames == s.frames && again.end == s.end &&
             again.gaps == s.gaps && again.valid_bytes == s.valid_bytes);
  return 0;
}
