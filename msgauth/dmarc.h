// DMARC evaluation (RFC 7489 §6.6): the RFC5322.From domain, the policy record lookup (_dmarc.<From
// domain>, then _dmarc.<organizational domain>) as a step machine the caller answers, alignment of the
// SPF and DKIM results, and the disposition after p/sp and pct (with the random draw injected).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "msgauth/dkim_canon.h"
#include "msgauth/dmarc_record.h"
#include "msgauth/dns.h"
#include "msgauth/result.h"

namespace mta::msgauth {

// The domain of the single author address in the single From field, lower-cased. nullopt (with err)
// when there is no From, more than one, a list of several mailboxes, a group, or no usable domain:
// §6.6.1 leaves such mail to local policy, and the caller decides (typically: no DMARC, or reject).
std::optional<std::string> from_domain(const std::vector<HeaderField>& fields, std::string& err);

struct DmarcInput {
    std::string from_domain;
    AuthResult spf = AuthResult::none;
    std::string spf_domain;                // the domain SPF checked: MAIL FROM's, or HELO's for <>
    struct Dkim {
        AuthResult result;
        std::string domain;                // d=
    };
    std::vector<Dkim> dkim;
    unsigned random_percent = 0;           // uniform in [0, 100): the policy applies when below pct
};

enum class DmarcDisposition { none, quarantine, reject };

struct DmarcVerdict {
    AuthResult result = AuthResult::none;  // none (no usable record), pass, fail, temperror
    DmarcPolicy policy = DmarcPolicy::none;            // p or sp as published (policy.dmarc)
    DmarcDisposition disposition = DmarcDisposition::none;  // what to do, after pct
    bool sampled_out = false;              // pct spared this message the full policy
    bool spf_aligned = false, dkim_aligned = false;
    std::string record_domain;             // where the record was found
    std::string reason;
};

class DmarcCheck {
public:
    // The list is borrowed and must outlive the check.
    DmarcCheck(const PublicSuffixList& psl, DmarcInput input);

    bool done() const { return done_; }
    const DnsQuery& query() const { return query_; }  // TXT, while !done()
    void answer(const DnsAnswer& a);
    const DmarcVerdict& verdict() const { return verdict_; }

private:
    void evaluate(const DmarcRecord& rec);
    void finish(AuthResult r, std::string reason);

    const PublicSuffixList& psl_;
    DmarcInput in_;
    std::string org_;
    bool at_org_ = false;  // the pending query is the organizational-domain fallback
    bool done_ = false;
    DnsQuery query_;
    DmarcVerdict verdict_;
};

}  // namespace mta::msgauth
