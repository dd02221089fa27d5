// Listener settings that parse but cannot work, checked by `mtad -n`, at start and on reload.
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

// Whether any of smtp_listen, submission_listen, smtps_listen differ (only a restart rebinds them).
bool listeners_changed(const Config& a, const Config& b);

}  // namespace mta::master
