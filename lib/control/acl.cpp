#include "control/acl.hpp"

#include <algorithm>

namespace shmbus::control {

bool acl_grants(const Acl& acl, std::uint32_t uid, std::span<const std::uint32_t> groups,
                Role role) {
  if (uid == 0 || uid == acl.owner_uid) return true;
  const bool producer = role == Role::Producer;
  const auto& users = producer ? acl.producer_users : acl.consumer_users;
  const auto& listed = producer ? acl.producer_groups : acl.consumer_groups;
  auto in = [](const std::vector<std::uint32_t>& v, std::uint32_t x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  if (in(users, uid)) return true;
  const std::uint32_t group_bit = producer ? 0020 : 0040;
  return std::any_of(groups.begin(), groups.end(), [&](std::uint32_t g) {
    return in(listed, g) || (g == acl.group_gid && (acl.mode & group_bit) != 0);
  });
}

}  // namespace shmbus::control
