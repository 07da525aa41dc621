// bench/peers/peers.hpp — the other transports shmbus-peers measures, each a
// harness Channel (bench/harness/channel.hpp) made in the parent before the
// processes fork. Those that need a library are built only when meson found
// it (SHMBUS_PEER_* defines, bench/peers/meson.build).
//
//   uds        Unix domain socket pair (SOCK_SEQPACKET), blocking read/write
//   boost-mq   Boost.Interprocess message_queue (process-shared mutex and
//              condition variables), blocking send/receive
//   zeromq     ZeroMQ PAIR socket over ipc://, blocking send/recv
//   redis      Redis Streams on a unix socket: XADD, XREAD BLOCK (hiredis)
//   iceoryx    Eclipse iceoryx 2 untyped publisher/subscriber (zero-copy
//              loan/publish/take), polled in a busy loop like shmbus; needs
//              RouDi running
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "channel.hpp"

namespace shmbus::bench::peers {

std::unique_ptr<Channel> make_uds(std::uint32_t size);
#ifdef SHMBUS_PEER_BOOST
std::unique_ptr<Channel> make_boost_mq(std::uint32_t size);
#endif
#ifdef SHMBUS_PEER_ZMQ
// `dir`: where the ipc:// socket files go.
std::unique_ptr<Channel> make_zeromq(std::uint32_t size, const std::string& dir);
#endif
#ifdef SHMBUS_PEER_REDIS
std::unique_ptr<Channel> make_redis(std::uint32_t size, const std::string& socket);
#endif
#ifdef SHMBUS_PEER_ICEORYX
std::unique_ptr<Channel> make_iceoryx(std::uint32_t size);
#endif

// A name unique to this run and channel: "<prefix><pid>-<n>".
std::string unique_name(const char* prefix);

}  // namespace shmbus::bench::peers
