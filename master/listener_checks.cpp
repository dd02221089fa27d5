// Cross-key checks of the listening services (see listener_checks.h).
#include "master/listener_checks.h"

#include <arpa/inet.h>

#include <algorithm>

#include "common/tls_pair.h"
#include "msgauth/signing_keys.h"

namespace mta::master {

ListenerProblems check_listeners(const Config& c) {
    ListenerProblems p;
    const bool have_tls = !c.tls_cert.empty() && !c.tls_key.empty();
    auto add = [&](std::vector<ConfigError>& to, const char* key, const std::string& msg) {
        to.push_back({c.source, 0, key, msg});
    };
    if (!c.smtps_listen.empty() && !have_tls)
        add(p.errors, "smtps_listen", "needs tls_cert and tls_key: implicit TLS cannot work without a certificate");
    if (!c.submission_listen.empty() && !have_tls)
        add(p.warnings, "submission_listen",
            "no tls_cert/tls_key: STARTTLS, and so AUTH, cannot be offered; every MAIL there gets 530 5.7.0");
    // Files that cannot serve: with smtps_listen nothing could be offered there, so refuse (like a
    // missing tls_cert); otherwise mta-smtpd runs without STARTTLS (as Postfix does), and we say why.
    std::string tls_err;
    if (have_tls && !tls_check_pair_files(c.tls_cert, c.tls_key, tls_err))
        add(c.smtps_listen.empty() ? p.warnings : p.errors, "tls_key",
            "tls_cert " + c.tls_cert + " / tls_key " + c.tls_key + ": " + tls_err +
                (c.smtps_listen.empty() ? "; STARTTLS (and AUTH) will not be offered" : ""));
    for (auto [key, list] : {std::pair{"submission_listen", &c.submission_listen},
                             std::pair{"smtps_listen", &c.smtps_listen}})
        if (!list->empty() && c.auth_users.empty())
            add(p.warnings, key, "no auth_users: no client can authenticate, so every MAIL there gets 530 5.7.0");
    return p;
}

void check_dkim_keys(const Config& c, std::vector<ConfigError>& errors) {
    if (c.dkim_keys.empty()) return;
    msgauth::SigningKeys keys;
    keys.load(c.dkim_keys, c.source, errors);
}

bool listeners_changed(const Config& a, const Config& b) {
    auto same = [](const std::vector<HostPort>& x, const std::vector<HostPort>& y) {
        return std::equal(x.begin(), x.end(), y.begin(), y.end(),
                          [](const HostPort& l, const HostPort& r) { return l.host == r.host && l.port == r.port; });
    };
    return !same(a.smtp_listen, b.smtp_listen) || !same(a.submission_listen, b.submission_listen) ||
           !same(a.smtps_listen, b.smtps_listen) || !same(a.metrics_listen, b.metrics_listen);
}

bool ipv6_wildcard_dual_stack(const Config& c, uint16_t port) {
    for (auto* list : {&c.smtp_listen, &c.submission_listen, &c.smtps_listen, &c.metrics_listen})
        for (auto& hp : *list) {
            if (hp.port != port) continue;
            unsigned char buf[16];
            if (hp.host.empty() || inet_pton(AF_INET6, hp.host.c_str(), buf) != 1) return false;  // IPv4 here too
        }
    return true;
}

}  // namespace mta::master
