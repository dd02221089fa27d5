// Which delivery role gets a recipient domain, and with what next hop: the one place that knows that
// local domains go to mta-local (Maildir) unless `local_transport` sends them to an LMTP server
// through mta-smtp. Pure; the queue calls it when it groups recipients into deliveries.
#pragma once
#include <string>
#include <string_view>

#include "common/config.h"

namespace mta {

struct Route {
    std::string role;     // "local" or "smtp"
    std::string nexthop;  // the domain, or "lmtp:unix:/path" / "lmtp:[host]:port" for LMTP
};

// `domain` lower-cased; "" (a bare local part such as "postmaster") counts as local.
Route route(const Config& cfg, std::string_view domain);

}  // namespace mta
