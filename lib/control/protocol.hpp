// lib/control/protocol.hpp — the control protocol between shmbus clients and
// the daemon shmbusd, over an AF_UNIX SOCK_SEQPACKET socket
// ($XDG_RUNTIME_DIR/shmbus/<bus>.sock or /run/shmbus/<bus>.sock).
//
// One datagram is one message: a fixed 16-byte header and a body of exactly
// `length` bytes. All integers are little-endian (the host's order: the
// socket never leaves the machine) and unaligned in the body.
//
//   Header (16 bytes)
//     0  magic       u32  kMagic ("SBUS")
//     4  version     u16  kVersion; another version is refused
//     6  type        u16  MsgType
//     8  length      u32  body bytes; header + body <= kMaxMessage (requests)
//                          or kMaxReply (replies)
//     12 request_id  u32  chosen by the client, echoed in the reply
//
// Body fields, in order, with no padding:
//   str   = u16 n, then n bytes (n <= kMaxName for names, kMaxText for text)
//   ids   = u16 n (n <= kMaxIds), then n x u32
//   opts  = u32 partitions, u64 segment_bytes, u32 segment_count,
//           u8 policy (1 block, 2 overwrite), u8 exclusive, u32 alignment,
//           u32 max_producers, u32 max_consumers, i32 numa_node (-1: any),
//           u32 hung_producer_timeout_ms, u32 slow_consumer_timeout_ms (0: never),
//           u8 durable, u8 fsync (1 never, 2 interval, 3 always), u32 fsync_interval_ms,
//           u64 retention_bytes, u64 retention_ms (0: no limit)
//   acl   = u32 owner_uid, u32 group_gid, u32 mode,
//           ids producer_users, ids producer_groups,
//           ids consumer_users, ids consumer_groups
//
// Requests (client -> daemon) and their replies:
//   Hello           str client_name               -> Ok: u32 daemon_pid, str bus
//   CreateTopic     str topic, opts, acl          -> Ok (empty)
//   DeleteTopic     str topic                     -> Ok (empty)
//                   Also removes a quarantined topic, and the files of a
//                   topic the daemon does not know (made without a daemon):
//                   root or the owner of its files only.
//   DescribeTopic   str topic                     -> Described: opts, acl, u32 n,
//                                                    n x (u64 tail, u32 producers, u32 consumers)
//   ListTopics      str after                     -> Listed: u32 n, n x str, u8 more
//                   A page of the names after `after` ("" = from the first),
//                   in order, as many as fit one reply; more = 1: ask again
//                   from the last name listed.
//   AttachProducer  str topic, u32 partition      -> Attached: u32 partition, u8 role,
//   AttachConsumer  str topic, u32 partition         u64 ring_bytes; SCM_RIGHTS: ring fd
//                                                    (O_RDWR producers, O_RDONLY consumers),
//                                                    cursor fd (O_RDWR)
//   Detach          str topic, u32 partition      -> Ok (empty)
//   Reattach        str topic, u32 partition,     -> Ok (empty)
//                   u8 role (1 producer, 2 consumer)
//                   A client that holds a slot in the partition (it attached
//                   before, to this daemon or to one that has died since)
//                   announces it on a new connection, so that the daemon
//                   supervises it again. The daemon checks the ACL as for an
//                   attach and that a slot of that role carries the peer's
//                   pid and start time; no descriptors are passed.
//   Stats           (empty)                       -> StatsReply: u32 clients (connected:
//                                                    not the slot holders a restarted daemon
//                                                    watches by pidfd), u32 topics,
//                                                    u64 requests, u64 errors,
//                                                    u64 reaped_producers, u64 reaped_consumers,
//                                                    u64 revoked_claims, u64 evicted_consumers
// Any request may instead get
//   Error           u32 code (ErrorCode), str text
//
// Rules the decoder enforces (each violation is an Error reply with the
// offending request_id, or 0 when the header itself is unreadable, and the
// connection stays open):
//   - the datagram is at least a header and at most kMaxMessage bytes;
//   - magic, version and a known request type; `length` equals the bytes
//     after the header; every field lies inside the body and the body has no
//     bytes left over; string and list lengths are within their bounds;
//   - the first request on a connection is Hello, and Hello comes once.
//
// The daemon learns who the peer is from SO_PEERCRED (pid, uid, gid) and its
// supplementary groups from /proc/<pid>/status, never from the message.
//
// Concurrency: plain value types and pure functions; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shmbus/options.hpp"
#include "shmbus/status.hpp"

namespace shmbus::control {

inline constexpr std::uint32_t kMagic = 0x53554253;  // "SBUS" little-endian
// Version 2 added Reattach and the supervision timeouts (CreateTopic,
// Described) and their stats; version 3 durability (opts). A peer of another version is refused
// (BadVersion).
inline constexpr std::uint16_t kVersion = 4;
inline constexpr std::size_t kHeaderBytes = 16;
inline constexpr std::size_t kMaxMessage = 8192;  // a request
inline constexpr std::size_t kMaxReply = 65536;   // a reply (Described, Listed)
inline constexpr std::size_t kMaxName = 200;
inline constexpr std::size_t kMaxText = 1024;
inline constexpr std::size_t kMaxIds = 64;

enum class MsgType : std::uint16_t {
  // requests
  Hello = 1,
  CreateTopic = 2,
  DeleteTopic = 3,
  DescribeTopic = 4,
  ListTopics = 5,
  AttachProducer = 6,
  AttachConsumer = 7,
  Detach = 8,
  Stats = 9,
  Reattach = 10,
  // replies
  Ok = 100,
  Error = 101,
  Described = 102,
  Listed = 103,
  Attached = 104,
  StatsReply = 105,
};

enum class ErrorCode : std::uint32_t {
  Truncated = 1,  // shorter than its header or its fields say
  Oversized = 2,  // over kMaxMessage, or a string/list over its bound
  BadMagic = 3,
  BadVersion = 4,
  UnknownType = 5,
  BadLength = 6,   // header length != body bytes, or bytes left over
  OutOfOrder = 7,  // a request before Hello, or a second Hello
  Invalid = 8,     // a field's value is out of range (bad name, options, ACL)
  NotFound = 9,    // no such topic or partition
  Exists = 10,     // topic exists already
  Denied = 11,     // the ACL does not grant it
  Internal = 12,   // the daemon failed (the text says how)
  Quarantined =
      13,  // the topic's files are damaged (the text says how); only DeleteTopic is served
};
const char* to_string(ErrorCode c) noexcept;

enum class Role : std::uint8_t { Producer = 1, Consumer = 2 };

struct Acl {
  std::uint32_t owner_uid = 0;
  std::uint32_t group_gid = 0;
  std::uint32_t mode = 0640;
  std::vector<std::uint32_t> producer_users, producer_groups;
  std::vector<std::uint32_t> consumer_users, consumer_groups;
};

struct PartitionStat {
  std::uint64_t tail = 0;
  std::uint32_t producers = 0;
  std::uint32_t consumers = 0;
};

struct DaemonStats {
  std::uint32_t clients = 0;
  std::uint32_t topics = 0;
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  std::uint64_t reaped_producers = 0;
  std::uint64_t reaped_consumers = 0;
  std::uint64_t revoked_claims = 0;     // hung producers' claims (hung_producer_timeout)
  std::uint64_t evicted_consumers = 0;  // slow consumers (slow_consumer_timeout)
  std::uint64_t spilled_bytes = 0;      // written to segment files (durable topics)
  std::uint64_t spill_errors = 0;       // writes and fdatasyncs that failed
};

// One decoded message; which fields mean something depends on `type`.
struct Message {
  MsgType type = MsgType::Hello;
  std::uint32_t request_id = 0;
  std::string name;  // Hello: client name / bus; topic otherwise
  std::uint32_t partition = 0;
  TopicOptions options;
  int numa_node = -1;
  Acl acl;
  std::vector<PartitionStat> partitions;  // Described
  std::vector<std::string> names;         // Listed
  bool more = false;                      // Listed: names after the last one remain
  std::uint32_t pid = 0;                  // Ok after Hello
  Role role = Role::Producer;             // Attached, Reattach
  std::uint64_t ring_bytes = 0;           // Attached
  ErrorCode code = ErrorCode::Internal;   // Error
  std::string text;                       // Error
  DaemonStats stats;                      // StatsReply
};

struct DecodeError {
  ErrorCode code;
  std::uint32_t request_id;  // 0 when the header could not be read
  std::string text;
};

// Encodes `m` (request or reply) into one datagram.
std::vector<std::byte> encode(const Message& m);

// Decodes one datagram that arrived whole (`truncated`: the socket said
// MSG_TRUNC, i.e. it was larger than the buffer). `hello_done` says whether
// this connection has already said Hello; requests only (`replies` false) or
// replies only. Never reads outside `bytes`.
struct Decoded {
  bool ok = false;
  Message message;
  DecodeError error{ErrorCode::Internal, 0, {}};
};
Decoded decode(std::span<const std::byte> bytes, bool truncated, bool hello_done, bool replies);

// Convenience for replies.
Message error_reply(std::uint32_t request_id, ErrorCode code, std::string text);

}  // namespace shmbus::control
