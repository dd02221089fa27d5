// Delivery, TLS-RPT part (RFC 8460): with tlsrpt_reports on, every session to an MX host of the
// recipient domain under a DANE or MTA-STS policy counts as a success or a failure of that policy, and
// the job's counts travel back to the queue with its result, which aggregates them for the daily
// report. Only domains that publish a _smtp._tls record with a mailto: rua get counted: the record is
// looked up (through mta-resolver, cached here for an hour) before the result goes back.
#include "smtp-client/smtp_delivery.h"

#include <ctime>

#include "common/log.h"
#include "common/text.h"

namespace mta::smtp {

namespace {

constexpr uint64_t kRuaTtl = 3600, kRuaFailTtl = 300;
constexpr std::size_t kRuaCacheMax = 10000;

}  // namespace

void Delivery::note_tls_result(bool opened) {
    if (!env_.cfg->tlsrpt_reports || lmtp_ || !dest_.mx || !session_) return;
    const SessionSettings& s = session_->settings();
    tlsrpt::Result r;
    r.policy_domain = dest_.host;
    if (s.level == TlsLevel::dane && !s.tlsa.empty()) {
        r.policy_type = "tlsa";
        for (const Tlsa& t : s.tlsa) r.policy_strings.push_back(t.text());
    } else if ((s.level == TlsLevel::mta_sts || s.sts_testing) && sts_.found) {
        r.policy_type = "sts";
        r.policy_strings = {"version: STSv1", std::string("mode: ") + (s.sts_testing ? "testing" : "enforce"),
                            "max_age: " + std::to_string(sts_.policy.max_age)};
        for (auto& mx : sts_.policy.mx) r.policy_strings.push_back("mx: " + mx);
        r.mx_host_patterns = sts_.policy.mx;
    } else {
        return;
    }
    const std::string& failure = session_->tls_failure();
    if (failure.empty()) {
        // Met: verified (enforce, DANE), or TLS up without a complaint (testing). A session that ended
        // before TLS for another reason (refused, timed out) says nothing about the policy.
        if (!opened || !session_->tls_active()) return;
        r.success = true;
    } else {
        r.result_type = failure;
        r.additional_information = session_->tls_failure_detail();
        r.sending_mta_ip = session_->local_ip();
        r.receiving_mx_hostname = session_->target().host;
        r.receiving_ip = session_->target().ip;
    }
    report_.add(r);
}

// True when the result must wait for the domain's _smtp._tls record (complete() runs again then).
bool Delivery::attach_tls_report() {
    if (report_.empty()) return false;
    uint64_t now = uint64_t(time(nullptr));
    auto& cache = *env_.rua_cache;
    auto it = cache.find(dest_.host);
    if (it == cache.end() || it->second.expires <= now) {
        if (!env_.dns->available()) {
            report_ = {};
            return false;
        }
        std::weak_ptr<bool> alive = alive_;
        std::string domain = dest_.host;
        env_.dns->query("_smtp._tls." + domain, 16, [this, alive, domain, &cache](const DnsAnswer& a) {
            RuaCacheEntry e;
            e.expires = uint64_t(time(nullptr)) + (a.rcode == kRcodeNoError || a.rcode == kRcodeNxdomain ? kRuaTtl : kRuaFailTtl);
            for (auto& rec : a.records) {
                tlsrpt::Rua rua;
                std::string err;
                if (rec.rfind("v=TLSRPTv1", 0) == 0 && tlsrpt::parse_record(rec, rua, err)) {
                    e.mailto = rua.mailto;
                    break;
                }
            }
            if (cache.size() >= kRuaCacheMax) cache.clear();
            cache[domain] = e;  // the cache outlives deliveries; `this` may not
            if (!alive.lock()) return;
            complete();
        });
        return true;
    }
    if (!it->second.mailto.empty()) {
        job_.tlsrpt = report_.encode();
        job_.tlsrpt_rua = join(it->second.mailto);
    }
    report_ = {};
    return false;
}

}  // namespace mta::smtp
