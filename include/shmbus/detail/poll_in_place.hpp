// shmbus/detail/poll_in_place.hpp — the common case of Consumer::poll,
// compiled into the caller: committed Data frames with neither key nor
// properties, read in place on a `block` topic. Anything else (a skipped or
// PAD frame, a key or properties, an `overwrite` topic, data older than the
// consumer's join, a damaged header) is left to the library, which goes on
// from where this stopped (PollProgress).
//
// Why in the header: a busy-spinning consumer's poll is on the path of every
// message, between the commit landing and the handler's reply. The call into
// the library and the indirect call of the handler cost a 64 B round trip
// 10-20% on this VM (README, Performance: the same loads and stores written
// inline in the latency harness matched the bare SPSC ring). Aeron's C++
// client inlines its subscription's poll the same way.
//
// The frame's layout is in frame.hpp. The loop is the consumer column of the
// protocol in lib/log/layout.hpp: look at the frame at `position` (look_at:
// the commit word, its position XOR the ring's salt, then the header), then
// read the payload;
// check the cursor slot before each delivery and after the last (eviction);
// publish the cursor once per batch. It writes nothing but the consumer's own
// cursor.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "shmbus/detail/frame.hpp"
#include "shmbus/message.hpp"
#include "shmbus/status.hpp"

namespace shmbus::detail {

// A consumer's reading state, shared by this header and the library
// (Consumer::Impl keeps it; its address is fixed for the consumer's life).
struct PollState {
  // Fixed when the consumer opens.
  FrameGeometry ring;  // its frames are mapped read-only
  bool block = false;  // a `block` topic: frames at >= safe_from are read in place
  // Our cursor slot's words (in the cursor file), and the control word's
  // value while the slot is ours (`mine`).
  std::uint64_t* control_word = nullptr;
  std::uint64_t* position_word = nullptr;
  std::uint64_t mine = 0;
  std::uint64_t position = 0;   // next frame to read
  std::uint64_t published = 0;  // last value stored in *position_word
  std::uint64_t safe_from = 0;  // frames below it may be overwritten under us: copied
  // Polls that found the frame at `position` not ready: every
  // kStuckCheckEvery-th one goes on in the library, which tells a claim
  // abandoned by a dead producer from one still being written.
  std::uint32_t idle_polls = 0;
};
inline constexpr std::uint32_t kStuckCheckEvery = 1024;

// Where poll's common case stopped, for the library to go on from.
struct PollProgress {
  PollResult result;
  bool in_place = false;      // some frame was read in place in this batch
  std::uint64_t trusted = 0;  // where the next frame surely starts
};

// True when our slot is no longer ours. The fence orders our reads of
// frames before the load.
inline bool evicted(const PollState& s) noexcept {
  std::atomic_thread_fence(std::memory_order_acquire);
  return std::atomic_ref<std::uint64_t>(*s.control_word).load(std::memory_order_relaxed) != s.mine;
}

inline void publish_cursor(PollState& s) noexcept {
  if (s.position == s.published) return;
  // SYNC POINT: pairs with the producers' acquire loads in Ring::gate.
  std::atomic_ref<std::uint64_t>(*s.position_word).store(s.position, std::memory_order_release);
  s.published = s.position;
}

// The end of a batch, here or in the library: the eviction check after
// in-place reads, then the cursor.
inline PollResult finish_poll(PollState& s, const PollProgress& done) noexcept {
  PollResult r = done.result;
  if (done.in_place && r.status != Status::Evicted && evicted(s)) r.status = Status::Evicted;
  if (r.status == Status::Evicted) {  // the slot is not ours to write
    s.position = done.trusted;        // rejoin() reports the loss from here
    return r;
  }
  publish_cursor(s);
  if (r.count > 0 && r.status == Status::Empty) r.status = Status::Ok;
  return r;
}

// Delivers committed in-place frames at s.position to handler(const
// Message&); calls rest(PollProgress) where the library must go on.
template <class F, class Rest>
inline PollResult poll_in_place(PollState& s, F& handler, std::uint32_t max, Rest&& rest) {
  if (std::atomic_ref<std::uint64_t>(*s.control_word).load(std::memory_order_relaxed) != s.mine)
    return {Status::Evicted, 0};
  PollProgress at{{Status::Empty, 0}, false, s.position};
  bool not_ready = false;  // stopped at a frame nobody has settled yet
  if (s.block) {
    while (at.result.count < max && s.position >= s.safe_from) {
      const std::uint64_t p = s.position;
      // SYNC POINT: pairs with the producer's release store of the commit word.
      const FrameLook f = look_at(s.ring, p);
      if (f.state != FrameState::Committed) {
        not_ready = f.state != FrameState::Skipped;
        break;
      }
      if (f.type != kFrameTypeData || (f.flags & kFrameMustUnderstandFlags) != 0 || f.damaged())
        break;
      at.in_place = true;
      if (evicted(s)) {
        at.result.status = Status::Evicted;
        break;
      }
      Message m;
      m.position = p;
      m.timestamp_ns = f.timestamp;
      m.payload = {s.ring.frames + (p & s.ring.mask) + kFrameHeaderBytes, f.length};
      handler(static_cast<const Message&>(m));
      s.position = at.trusted = f.next;
      ++at.result.count;
    }
  }
  const bool look_closer = !not_ready || ++s.idle_polls % kStuckCheckEvery == 0;
  if (look_closer && at.result.count < max && at.result.status == Status::Empty) return rest(at);
  return finish_poll(s, at);
}

}  // namespace shmbus::detail
