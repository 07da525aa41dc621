#include "client/attach.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "shm/file.hpp"
#include "shm/name.hpp"

namespace shmbus::client {

std::optional<std::string> daemon_socket(std::string_view bus) {
  const char* env = std::getenv("SHMBUS_SOCKET");
  std::string socket = env != nullptr && *env != '\0' ? env : control::default_socket_path(bus);
  if (::access(socket.c_str(), F_OK) != 0) return std::nullopt;
  return socket;
}

Result<Attachment> attach(std::string_view bus, std::string_view topic, std::uint32_t partition,
                          bool producer, bool prefault) {
  if (auto ok = shm::check_name("bus", bus); !ok) return ok.error();
  if (auto ok = shm::check_name("topic", topic); !ok) return ok.error();
  const std::optional<std::string> found = daemon_socket(bus);
  if (!found) {  // no daemon: the embedded path
    auto ring = log::Ring::open(shm::bus_directory(bus), topic, partition, producer, prefault);
    if (!ring) return ring.error();
    return Attachment{std::move(ring).value(), {}};
  }
  const std::string& socket = *found;
  auto conn = control::Connection::connect(socket, producer ? "producer" : "consumer");
  if (!conn) return conn.error();
  control::Message request;
  request.type = producer ? control::MsgType::AttachProducer : control::MsgType::AttachConsumer;
  request.name = std::string(topic);
  request.partition = partition;
  auto reply = conn->call(std::move(request));
  if (!reply) return reply.error();
  if (reply->message.type == control::MsgType::Error)
    return Error{EACCES, "shmbusd (" + socket + ") refused to attach " +
                             (producer ? "a producer" : "a consumer") + " to " +
                             std::string(topic) + "." + std::to_string(partition) + ": " +
                             reply->message.text};
  if (reply->message.type != control::MsgType::Attached || reply->fds.size() != 2)
    return Error{EPROTO, "shmbusd (" + socket + ") sent an unexpected reply to attach"};
  auto ring = log::Ring::open_fds(reply->fds[0].get(), reply->fds[1].get(), topic, partition,
                                  producer, prefault);
  if (!ring) return ring.error();
  control::HeldSlot held{socket, std::string(topic), partition,
                         producer ? control::Role::Producer : control::Role::Consumer};
  return Attachment{std::move(ring).value(),
                    control::Supervision::start(std::move(conn).value(), std::move(held))};
}

}  // namespace shmbus::client

namespace shmbus::detail {

Outcome check_frame_abi(std::uint32_t compiled) {
  if (compiled == kFrameAbi) return Done{};
  return Error{ENOEXEC, "this program was compiled against shmbus headers of frame ABI " +
                            std::to_string(compiled) + ", but runs with the shmbus library of " +
                            "frame ABI " + std::to_string(kFrameAbi) +
                            ": rebuild it against the headers of the installed shmbus"};
}

}  // namespace shmbus::detail
