// One message through mta-msgauth, as a step machine with no I/O: signing for trusted mail (mynetworks
// or authenticated), DKIM + SPF (MAIL FROM and HELO) + DMARC verification for the rest, and in both
// cases the octet ranges of forged Authentication-Results claiming our authserv-id. The daemon feeds it
// the DNS answers it asks for and sends the reply it ends with. Everything in the message and in DNS
// is untrusted; the settings and keys are the admin's.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/wire/msgauth.h"
#include "msgauth/dkim_canon.h"
#include "msgauth/dkim_verify.h"
#include "msgauth/dmarc.h"
#include "msgauth/dns.h"
#include "msgauth/signing_keys.h"
#include "msgauth/spf.h"

namespace mta::msgauth {

struct JobSettings {
    std::string hostname;           // authserv-id, SPF %{r}, Received-SPF receiver
    bool verify = true;             // msgauth_verify
    std::size_t max_signatures = 8; // dkim_max_signatures
    bool spf_reject_fail = false;   // spf_action = reject_fail
    bool dmarc_enforce = false;     // dmarc_action = enforce
};

// The envelope facts of wire::MsgauthRequest.
struct JobFacts {
    std::string client_ip, helo, sender, auth_user;
    bool trusted = false;
};

class Job {
public:
    // `keys` and `psl` are borrowed and outlive the job. `random_percent` is DMARC's pct draw.
    Job(const JobSettings& settings, const SigningKeys& keys, const PublicSuffixList& psl, JobFacts facts,
        std::string message, uint64_t now, unsigned random_percent);
    ~Job();

    // Questions not asked yet (each distinct question is handed out once while it is open).
    std::vector<DnsQuery> new_queries();
    void answer(const DnsQuery& q, const DnsAnswer& a);
    bool done() const { return done_; }

    const wire::MsgauthReply& reply() const { return reply_; }
    // key=value pairs for the daemon's log line: what was signed or what the checks said.
    const std::string& summary() const { return summary_; }

private:
    void find_forged();
    void sign(const SigningKeys& keys, uint64_t now);
    void start_verify(uint64_t now);
    void advance();
    void start_dmarc();
    void finish_verify();
    void refuse(wire::MsgauthReply r, const std::string& why);

    JobSettings settings_;
    const PublicSuffixList& psl_;
    JobFacts facts_;
    std::string message_;
    HeaderSection hs_;
    unsigned random_percent_;
    std::optional<DkimVerifier> dkim_;
    std::optional<SpfCheck> spf_from_, spf_helo_;
    std::optional<DmarcCheck> dmarc_;
    std::optional<std::string> from_domain_;
    std::string from_problem_;
    IpAddress ip_{};
    std::vector<DnsQuery> open_;  // handed out, not answered yet
    bool done_ = false;
    wire::MsgauthReply reply_;
    std::string summary_;
};

}  // namespace mta::msgauth
