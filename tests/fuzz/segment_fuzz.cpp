// tests/fuzz/segment_fuzz.cpp — the recovery scan of a segment file
// (lib/log/segment_format.hpp scan_segment), which reads whatever a crash,
// a torn write or a bad disk left.
//
// Input: a segment file's bytes; its base is taken from where the header
// keeps it, so inputs with a valid header reach the batches.
// What must hold: the scan reads nothing outside the input (ASan), accepts
// a prefix of it (a valid header and then whole batches), and that prefix
// alone, followed by zeros, scans to the same batches with a clean end:
// what recovery keeps after truncating is itself a clean file. A scan
// resumed at a batch boundary (as from a checkpoint) agrees with it.
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
  // Resuming where a checkpoint could point gives the same answer: at the
  // first batch (the whole scan again), and at the end of what was kept.
  const SegmentScan whole = scan_segment(file, base, ScanFrom{kSegmentDataAt, base});
  FUZZ_CHECK(whole.batches == s.batches && whole.end == s.end && whole.stop == s.stop &&
             whole.valid_bytes == s.valid_bytes && whole.scanned_bytes == s.scanned_bytes);
  const SegmentScan tail = scan_segment(file, base, ScanFrom{s.valid_bytes, s.end});
  FUZZ_CHECK(tail.batches == 0 && tail.end == s.end && tail.valid_bytes == s.valid_bytes &&
             tail.scanned_bytes == 0);
  return 0;
}
