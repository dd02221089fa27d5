// Role names: the only place they are spelled.
#include "common/role_name.h"

namespace mta {

const char* role_name(Role r) {
    switch (r) {
    case Role::master: return "master";
    case Role::smtpd: return "smtpd";
    case Role::queue: return "queue";
    case Role::smtp: return "smtp";
    case Role::local: return "local";
    case Role::resolver: return "resolver";
    case Role::msgauth: return "msgauth";
    case Role::metrics: return "metrics";
    }
    return "unknown";
}

const char* role_program(Role r) {
    switch (r) {
    case Role::master: return "mtad";
    case Role::smtpd: return "mta-smtpd";
    case Role::queue: return "mta-queue";
    case Role::smtp: return "mta-smtp";
    case Role::local: return "mta-local";
    case Role::resolver: return "mta-resolver";
    case Role::msgauth: return "mta-msgauth";
    case Role::metrics: return "mta-metrics";
    }
    return "unknown";
}

std::optional<Role> parse_role(std::string_view name) {
    for (Role r : kAllRoles)
        if (name == role_name(r)) return r;
    return std::nullopt;
}

}  // namespace mta
