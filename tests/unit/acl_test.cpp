// control::acl_grants: each rule of a topic's ACL grants what it says, for
// the role it names, and nothing else does (the daemon's tests run as root,
// where every check passes; this one runs the rules themselves).
#include <gtest/gtest.h>

#include <vector>

#include "control/acl.hpp"

namespace shmbus::control {
namespace {

bool grants(const Acl& acl, std::uint32_t uid, std::vector<std::uint32_t> groups, Role role) {
  return acl_grants(acl, uid, groups, role);
}

TEST(AclGrants, EachRuleAndNothingElse) {
  Acl acl;
  acl.owner_uid = 1000;
  acl.group_gid = 500;
  acl.mode = 0640;  // group may read (consume), not write (produce)
  acl.producer_users = {2001};
  acl.consumer_users = {2002};
  acl.producer_groups = {601};
  acl.consumer_groups = {602};
  for (Role r : {Role::Producer, Role::Consumer}) {
    EXPECT_TRUE(grants(acl, 0, {}, r)) << "root";
    EXPECT_TRUE(grants(acl, 1000, {}, r)) << "the owner";
    EXPECT_FALSE(grants(acl, 3000, {}, r)) << "a stranger";
    EXPECT_FALSE(grants(acl, 3000, {999, 7}, r)) << "a stranger's unlisted groups";
  }
  // Listed users, for their role only.
  EXPECT_TRUE(grants(acl, 2001, {}, Role::Producer));
  EXPECT_FALSE(grants(acl, 2001, {}, Role::Consumer));
  EXPECT_TRUE(grants(acl, 2002, {}, Role::Consumer));
  EXPECT_FALSE(grants(acl, 2002, {}, Role::Producer));
  // Listed groups, as any of the peer's groups, for their role only.
  EXPECT_TRUE(grants(acl, 3000, {7, 601}, Role::Producer));
  EXPECT_FALSE(grants(acl, 3000, {7, 601}, Role::Consumer));
  EXPECT_TRUE(grants(acl, 3000, {602}, Role::Consumer));
  EXPECT_FALSE(grants(acl, 3000, {602}, Role::Producer));
  // The topic's group gets what the mode's group bits give.
  EXPECT_TRUE(grants(acl, 3000, {500}, Role::Consumer));
  EXPECT_FALSE(grants(acl, 3000, {500}, Role::Producer));
  acl.mode = 0660;
  EXPECT_TRUE(grants(acl, 3000, {500}, Role::Producer));
  acl.mode = 0600;
  EXPECT_FALSE(grants(acl, 3000, {500}, Role::Consumer));
  // The "other" bits grant nothing (files are never world-writable anyway).
  acl.mode = 0604;
  EXPECT_FALSE(grants(acl, 3000, {}, Role::Consumer));
  // The owner's uid as a group id is not the owner.
  EXPECT_FALSE(grants(acl, 3000, {1000}, Role::Consumer));
}

}  // namespace
}  // namespace shmbus::control
