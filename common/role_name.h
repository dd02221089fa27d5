// The processes of the MTA, by name: one enum, one spelling of each. The names are what a role says in
// its HELLO, what the master puts in `peer` messages, and what log lines show after role=.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace mta {

enum class Role : uint8_t { master, smtpd, queue, smtp, local, resolver, msgauth, metrics };

inline constexpr Role kAllRoles[] = {Role::master, Role::smtpd, Role::queue, Role::smtp, Role::local, Role::resolver,
                                   Role::msgauth, Role::metrics};

// "smtpd", "queue", ...: the on-the-wire and log name.
const char* role_name(Role r);
// The program the master starts for it: "mta-smtpd", ...; "mtad" for the master itself.
const char* role_program(Role r);
// The inverse of role_name; nothing for any other text (the wire is not trusted).
std::optional<Role> parse_role(std::string_view name);

}  // namespace mta
