// LMTP next hops (RFC 2033) for mta-smtp: "lmtp:unix:/path" or "lmtp:[host]:port", as produced by
// common/routing from `local_transport`. Pure parsing; the queue's nexthop is checked like any input.
#pragma once
#include <string>
#include <string_view>

#include "smtp-client/smtp_targets.h"

namespace mta::smtp {

inline bool is_lmtp_nexthop(std::string_view nexthop) { return nexthop.rfind("lmtp:", 0) == 0; }

// Fill `out` with the address to connect to. A unix path is seen from inside mta-smtp's chroot
// (<spool_dir>/empty when running as root). False with `err` on bad syntax.
bool parse_lmtp_nexthop(std::string_view nexthop, Target& out, std::string& err);

}  // namespace mta::smtp
