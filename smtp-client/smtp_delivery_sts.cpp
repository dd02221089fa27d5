// Delivery, MTA-STS part (RFC 8461) and REQUIRETLS refusals (RFC 8689): the recipient domain's policy
// comes from mta-resolver (which fetches, validates and caches it); here it is applied per MX host:
// enforce = only matching MX hosts, TLS required and WebPKI-verified, failures defer with 4.7.5;
// testing = as "may", logging event=mta_sts_failure where enforce would have refused; none = "may".
#include "smtp-client/smtp_delivery.h"

#include <strings.h>

#include "common/log.h"
#include "smtp-client/smtp_reply.h"

namespace mta::smtp {

using ipc::DeliveryStatus;

void Delivery::lookup_sts() {
    if (!env_.dns->available()) {
        finish(DeliveryStatus::deferred, "4.4.3 resolver unavailable");
        return;
    }
    std::weak_ptr<bool> alive = alive_;
    env_.dns->query(dest_.host, sts::kQtypeMtaSts, [this, alive](const DnsAnswer& a) {
        if (!alive.lock()) return;
        sts::Lookup l;
        if (a.rcode != kRcodeNoError || !sts::decode_lookup(a.records, l)) {
            // The resolver itself falls back to "no policy" where RFC 8461 says so; not getting an
            // answer from it at all must not silently downgrade an enforce domain.
            std::string why = a.rcode != kRcodeNoError ? sanitize(a.text, 120) : "malformed answer from the resolver";
            finish(DeliveryStatus::deferred, "4.4.3 MTA-STS policy lookup for " + dest_.host + " failed: " + why);
            return;
        }
        sts_ = std::move(l);
        LOG_INFO("event=mta_sts_policy qid=%s domain=%s mode=%s id=%s source=%s%s%s", job_.qid().c_str(),
                 dest_.host.c_str(), sts_.found ? sts::mode_name(sts_.policy.mode) : "none",
                 sts_.found ? sts_.id.c_str() : "-", sts_.found ? sts_.source.c_str() : "-",
                 a.text.empty() ? "" : " note=", a.text.empty() ? "" : ("\"" + log::safe(a.text) + "\"").c_str());
        resolve();
    });
}

void Delivery::apply_sts(const Target& t) {
    SessionSettings s = settings();
    s.level = TlsLevel::may;
    sts::Mode mode = sts_.found ? sts_.policy.mode : sts::Mode::none;
    if (mode != sts::Mode::none) {
        bool match = sts::policy_matches(sts_.policy, t.host);
        if (mode == sts::Mode::enforce && !match) {
            LOG_INFO("event=mta_sts_skip qid=%s relay=%s reason=\"MX host not in the MTA-STS policy\"",
                     job_.qid().c_str(), relay_.c_str());
            // Not a temporary failure: the policy excludes this host for as long as it is in force.
            last_error_ = "4.7.5 MTA-STS: MX host " + t.host + " does not match the policy of " + dest_.host;
            try_next();
            return;
        }
        if (mode == sts::Mode::testing && !match)
            LOG_WARN("event=mta_sts_failure qid=%s relay=%s mode=testing reason=\"MX host not in the policy\"",
                     job_.qid().c_str(), relay_.c_str());
        s.names = {t.host};
        if (mode == sts::Mode::enforce) s.level = TlsLevel::mta_sts;
        else s.sts_testing = true;
    }
    LOG_DEBUG("event=tls_policy qid=%s relay=%s level=%s mta_sts=%s", job_.qid().c_str(), relay_.c_str(),
              tls_level_name(s.level), sts::mode_name(mode));
    connect(t, std::move(s));
}

void Delivery::refuse_for_requiretls(const std::string& why) {
    LOG_INFO("event=requiretls_refused qid=%s relay=%s reason=\"%s\"", job_.qid().c_str(), relay_.c_str(),
             log::safe(why).c_str());
    requiretls_error_ = why;
    if (last_error_.empty()) last_error_ = "4.7.5 REQUIRETLS: " + why;
    try_next();
}


bool Delivery::sts_applies() const { return level_ == TlsLevel::mta_sts && own_mx(); }

bool Delivery::own_mx() const {
    if (!dest_.mx) return false;
    if (dest_.host == job_.nexthop) return true;
    if (job_.nexthop != "smtp:" + dest_.host || job_.rcpts.empty()) return false;
    const std::string& a = job_.rcpts.front().addr;
    auto at = a.rfind('@');
    return at != std::string::npos && strcasecmp(a.c_str() + at + 1, dest_.host.c_str()) == 0;
}

}  // namespace mta::smtp
