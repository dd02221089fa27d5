// Settings that parse but cannot work (listeners, DKIM keys), checked by `mtad -n`, at start and on reload.
#pragma once
#include <vector>

#include "common/config.h"

namespace mta::master {

struct ListenerProblems {
    std::vector<ConfigError> errors;    // refuse to start (or to reload)
    std::vector<ConfigError> warnings;  // start, but say so in the log
};

// smtps_listen without tls_cert/tls_key is an error (implicit TLS has nothing to offer);
// submission_listen without them, or either without auth_users, is a warning: clients there
// can never authenticate, so every MAIL gets 530 5.7.0. tls_cert/tls_key that cannot be read, do not
// parse or do not belong together: an error with smtps_listen, a warning otherwise.
ListenerProblems check_listeners(const Config& c);

// dkim_keys: the table opens and every key file it names loads (as mta-msgauth will load them). Each
// bad key is one error at the FILE:LINE of the table source that names it.
void check_dkim_keys(const Config& c, std::vector<ConfigError>& errors);

// Whether any of smtp_listen, submission_listen, smtps_listen, metrics_listen differ (only a restart rebinds them).
bool listeners_changed(const Config& a, const Config& b);

// Whether the wildcard [::]:port socket is opened dual-stack (IPV6_V6ONLY off, so that IPv4 clients
// arrive as ::ffff:a.b.c.d), like Postfix's single socket for inet_protocols = all. Only when no IPv4
// address, host name or ":port" (which also binds 0.0.0.0) is listed for the same port in any of the
// three *_listen keys: then the IPv4 entries serve IPv4 and [::] stays IPv6-only, since a dual-stack
// [::] socket would make their bind fail with "address in use".
bool ipv6_wildcard_dual_stack(const Config& c, uint16_t port);

}  // namespace mta::master
