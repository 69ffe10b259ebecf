#include "net/host_interface/routing_rules.h"

#include <arpa/inet.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "base/fd.h"

namespace hostvisor::net {

namespace {

struct Rule {
  uint32_t priority;
  std::string in_interface;  // "": any
  std::optional<Ipv4Network> destination;
  bool to_main_table = false;  // else unreachable
};

void add_attribute(std::vector<uint8_t>& message, uint16_t type, const void* data, size_t length) {
  rtattr attribute{};
  attribute.rta_type = type;
  attribute.rta_len = static_cast<unsigned short>(RTA_LENGTH(length));
  const size_t at = message.size();
  message.resize(at + RTA_ALIGN(attribute.rta_len), 0);
  std::memcpy(message.data() + at, &attribute, sizeof attribute);
  std::memcpy(message.data() + at + RTA_LENGTH(0), data, length);
}

// Sends one RTM_NEWRULE or RTM_DELRULE and waits for the kernel's answer;
// returns its errno (0: done).
Result<int> change_rule(uint16_t type, uint16_t flags, const Rule& rule) {
  std::vector<uint8_t> message(NLMSG_LENGTH(sizeof(fib_rule_hdr)), 0);
  fib_rule_hdr header{};
  header.family = AF_INET;
  header.action = rule.to_main_table ? FR_ACT_TO_TBL : FR_ACT_UNREACHABLE;
  header.table = rule.to_main_table ? RT_TABLE_MAIN : RT_TABLE_UNSPEC;
  if (rule.destination) header.dst_len = rule.destination->prefix_length;
  std::memcpy(message.data() + NLMSG_LENGTH(0), &header, sizeof header);
  add_attribute(message, FRA_PRIORITY, &rule.priority, sizeof rule.priority);
  if (!rule.in_interface.empty())
    add_attribute(message, FRA_IIFNAME, rule.in_interface.c_str(), rule.in_interface.size() + 1);
  if (rule.destination) {
    const uint32_t address = htonl(rule.destination->base.value);
    add_attribute(message, FRA_DST, &address, sizeof address);
  }
  nlmsghdr netlink{};
  netlink.nlmsg_len = static_cast<uint32_t>(message.size());
  netlink.nlmsg_type = type;
  netlink.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
  netlink.nlmsg_seq = 1;
  std::memcpy(message.data(), &netlink, sizeof netlink);

  UniqueFd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock.valid()) return Error::from_errno("opening a routing netlink socket");
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(sock.get(), message.data(), message.size(), 0, reinterpret_cast<const sockaddr*>(&kernel),
               sizeof kernel) < 0)
    return Error::from_errno("sending a routing rule to the kernel");
  alignas(nlmsghdr) uint8_t reply[4096];
  for (;;) {
    const ssize_t n = ::recv(sock.get(), reply, sizeof reply, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr))))
      return Error::from_errno("reading the kernel's answer about a routing rule");
    nlmsghdr answer;
    std::memcpy(&answer, reply, sizeof answer);
    if (answer.nlmsg_type != NLMSG_ERROR) continue;
    nlmsgerr error;
    std::memcpy(&error, reply + NLMSG_LENGTH(0), sizeof error);
    return -error.error;
  }
}

std::vector<Rule> rules_for(const std::string& bridge, const Ipv4Network& network) {
  const uint32_t first = kHostOnlyRulePriority;
  return {{first, "lo", network, true}, {first + 1, bridge, std::nullopt}, {first + 1, "", network}};
}

std::string describe(const Rule& rule) {
  return "pref " + std::to_string(rule.priority) + (rule.in_interface.empty() ? "" : " iif " + rule.in_interface) +
         (rule.destination ? " to " + format_ipv4_network(*rule.destination) : "") +
         (rule.to_main_table ? " lookup main" : " unreachable");
}
}  // namespace

Result<void> add_host_only_rules(const std::string& bridge, const Ipv4Network& network) {
  for (const Rule& rule : rules_for(bridge, network)) {
    const int err = HV_TRY(change_rule(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, rule));
    if (err != 0 && err != EEXIST) return Error::from_errno("adding the routing rule `" + describe(rule) + "`", err);
  }
  return ok();
}

Result<void> remove_host_only_rules(const std::string& bridge, const Ipv4Network& network) {
  for (const Rule& rule : rules_for(bridge, network)) {
    const int err = HV_TRY(change_rule(RTM_DELRULE, 0, rule));
    if (err != 0 && err != ENOENT) return Error::from_errno("removing the routing rule `" + describe(rule) + "`", err);
  }
  return ok();
}

}  // namespace hostvisor::net
