// One message's signing or verification (see msgauth_job.h).
#include "msgauth/msgauth_job.h"

#include <algorithm>

#include "msgauth/auth_results.h"
#include "msgauth/dkim_sign.h"

namespace mta::msgauth {
namespace {

bool asked(const std::vector<DnsQuery>& qs, const DnsQuery& q) { return std::find(qs.begin(), qs.end(), q) != qs.end(); }

}  // namespace

Job::Job(const JobSettings& settings, const SigningKeys& keys, const PublicSuffixList& psl, JobFacts facts,
         std::string message, uint64_t now, unsigned random_percent)
    : settings_(settings), psl_(psl), facts_(std::move(facts)), message_(std::move(message)),
      random_percent_(random_percent) {
    std::string err;
    if (!parse_header_section(message_, hs_, err)) {
        // Past what any check reads (1 MiB, 10000 fields): it could be neither signed nor checked, and a
        // forged Authentication-Results in it could not be removed, so it is refused (like Postfix's
        // header_size_limit, but whole: a header moved into the body would break DKIM anyway).
        refuse({ipc::MsgauthAction::reject, 552, "5.3.4", "Message header too large", "", {}}, err);
        return;
    }
    find_forged();
    from_domain_ = from_domain(hs_.fields, from_problem_);
    if (facts_.trusted) sign(keys, now);
    else if (settings_.verify) start_verify(now);
    else done_ = true;
}

Job::~Job() = default;

// Forged Authentication-Results: each field's octets, found by walking the CRLF lines mta-smtpd wrote
// (it refuses bare CR and LF, so every field is its raw text plus CRLF).
void Job::find_forged() {
    auto forged = forged_auth_results(hs_.fields, settings_.hostname);
    if (forged.empty()) return;
    uint64_t off = 0;
    std::size_t next = 0;
    for (std::size_t i = 0; i < hs_.fields.size() && next < forged.size(); i++) {
        const std::string& raw = hs_.fields[i].raw;
        bool crlf = message_.compare(off, raw.size(), raw) == 0 && message_.compare(off + raw.size(), 2, "\r\n") == 0;
        if (!crlf) break;  // not our own line ends: leave the header as it is (counted below)
        if (i == forged[next]) {
            reply_.cuts.push_back({off, raw.size() + 2});
            next++;
        }
        off += raw.size() + 2;
    }
    summary_ += "forged_auth_results=" + std::to_string(forged.size()) + " ";
}

void Job::sign(const SigningKeys& keys, uint64_t now) {
    done_ = true;
    if (!from_domain_) {
        summary_ += "signed=no reason=\"" + from_problem_ + "\"";
        return;
    }
    auto chosen = keys.for_domain(*from_domain_);
    if (chosen.empty()) {
        summary_ += "signed=no reason=\"no key for " + *from_domain_ + "\"";
        return;
    }
    DkimSigner signer(chosen, now);
    signer.feed_body(std::string_view(message_).substr(hs_.body_offset));
    std::vector<std::string> sigs;
    std::string err;
    if (!signer.finish(hs_.fields, sigs, err)) {
        // Mail that should carry our signature must not leave without it (DMARC would refuse it).
        refuse({ipc::MsgauthAction::tempfail, 451, "4.7.0", "DKIM signing failed, try again later", "", {}}, err);
        return;
    }
    for (auto& s : sigs) reply_.prepend += s;
    summary_ += "signed=yes d=" + chosen.front()->domain + " keys=" + std::to_string(chosen.size());
}

void Job::start_verify(uint64_t now) {
    dkim_.emplace(hs_.fields, settings_.max_signatures, now);
    dkim_->feed_body(std::string_view(message_).substr(hs_.body_offset));
    dkim_->finish_body();
    if (parse_ip(facts_.client_ip, ip_)) {
        SpfRequest req{ip_, facts_.sender, facts_.helo, settings_.hostname, now};
        spf_from_.emplace(req, SpfIdentity::mailfrom);
        spf_helo_.emplace(req, SpfIdentity::helo);
    }
    advance();
}

std::vector<DnsQuery> Job::new_queries() {
    std::vector<DnsQuery> want;
    if (dkim_ && !dkim_->done()) want = dkim_->queries();
    for (auto* spf : {&spf_from_, &spf_helo_})
        if (*spf && !(*spf)->done()) want.push_back((*spf)->query());
    if (dmarc_ && !dmarc_->done()) want.push_back(dmarc_->query());
    std::vector<DnsQuery> fresh;
    for (auto& q : want)
        if (!asked(open_, q) && !asked(fresh, q)) fresh.push_back(q);
    open_.insert(open_.end(), fresh.begin(), fresh.end());
    return fresh;
}

// Every check waiting for this question gets the answer; then whatever can go on goes on.
void Job::answer(const DnsQuery& q, const DnsAnswer& a) {
    auto it = std::find(open_.begin(), open_.end(), q);
    if (it == open_.end() || done_) return;
    open_.erase(it);
    if (dkim_ && !dkim_->done() && asked(dkim_->queries(), q)) dkim_->answer(q, a);
    for (auto* spf : {&spf_from_, &spf_helo_})
        if (*spf && !(*spf)->done() && (*spf)->query() == q) (*spf)->answer(a);
    if (dmarc_ && !dmarc_->done() && dmarc_->query() == q) dmarc_->answer(a);
    advance();
}

void Job::advance() {
    if (done_) return;
    bool spf_done = (!spf_from_ || spf_from_->done()) && (!spf_helo_ || spf_helo_->done());
    if (!dkim_->done() || !spf_done) return;
    if (!dmarc_ && from_domain_) start_dmarc();
    if (dmarc_ && !dmarc_->done()) return;
    finish_verify();
}

void Job::start_dmarc() {
    DmarcInput in;
    in.from_domain = *from_domain_;
    if (spf_from_) {
        in.spf = spf_from_->result();
        in.spf_domain = spf_from_->domain();
    }
    for (auto& v : dkim_->results())
        if (!v.domain.empty()) in.dkim.push_back({v.result, v.domain});
    in.random_percent = random_percent_;
    dmarc_.emplace(psl_, std::move(in));
}

void Job::finish_verify() {
    done_ = true;
    std::vector<AuthMethodResult> methods;
    std::string dkim_results;
    for (auto& v : dkim_->results()) {
        methods.push_back(dkim_method(v));
        dkim_results += std::string(dkim_results.empty() ? "" : ",") + result_name(v.result);
    }
    AuthResult spf = AuthResult::none;
    if (spf_from_) {
        spf = spf_from_->result();
        methods.push_back(spf_method(spf, SpfIdentity::mailfrom, spf_from_->sender()));
        if (!facts_.helo.empty()) methods.push_back(spf_method(spf_helo_->result(), SpfIdentity::helo, facts_.helo));
    }
    std::string dmarc_text = "none";
    if (dmarc_) {
        const DmarcVerdict& v = dmarc_->verdict();
        methods.push_back(dmarc_method(v, *from_domain_));
        dmarc_text = result_name(v.result);
    } else {
        methods.push_back({"dmarc", AuthResult::none, from_problem_, "", {}});
    }
    reply_.prepend = authentication_results(settings_.hostname, methods);
    if (spf_from_) {
        ReceivedSpf r;
        r.result = spf;
        r.receiver = settings_.hostname;
        r.client_ip = ip_;
        r.envelope_from = facts_.sender;
        r.helo = facts_.helo;
        r.identity = SpfIdentity::mailfrom;
        r.sender = spf_from_->sender();
        r.mechanism = spf_from_->mechanism();
        r.problem = spf_from_->problem();
        reply_.prepend += received_spf(r);
    }
    summary_ += "dkim=" + dkim_results + " spf=" + result_name(spf) + " dmarc=" + dmarc_text;
    if (settings_.spf_reject_fail && spf == AuthResult::fail) {
        std::string why = spf_from_->explanation().empty() ? "SPF validation failed for " + spf_from_->domain()
                                                            : spf_from_->explanation();
        refuse({ipc::MsgauthAction::reject, 550, "5.7.23", why, "", {}}, "spf_action=reject_fail");
        return;
    }
    if (dmarc_ && dmarc_->verdict().disposition != DmarcDisposition::none) {
        bool reject = dmarc_->verdict().disposition == DmarcDisposition::reject;
        summary_ += std::string(" dmarc_disposition=") + (reject ? "reject" : "quarantine");
        if (settings_.dmarc_enforce && reject) {
            refuse({ipc::MsgauthAction::reject, 550, "5.7.1", "Email rejected per DMARC policy for " + *from_domain_, "", {}},
                   "dmarc_action=enforce");
            return;
        }
        // quarantine: accepted (the sender hears 250) but queued held, for the admin to release or delete;
        // the reason is what `mtaqueue show` prints.
        if (settings_.dmarc_enforce && !reject) {
            reply_.action = ipc::MsgauthAction::hold;
            reply_.text = "DMARC policy quarantine for " + *from_domain_;
            summary_ += " action=hold";
        }
    }
}

// A refusal keeps nothing to prepend: the message is not queued.
void Job::refuse(wire::MsgauthReply r, const std::string& why) {
    done_ = true;
    reply_ = std::move(r);
    summary_ += (summary_.empty() ? "" : " ") + std::string("action=") +
                (reply_.action == ipc::MsgauthAction::reject ? "reject" : "tempfail") + " code=" +
                std::to_string(reply_.code) + " why=\"" + why + "\"";
}

}  // namespace mta::msgauth
