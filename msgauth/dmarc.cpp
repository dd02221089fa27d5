// DMARC: the From domain, record discovery and the policy decision (see dmarc.h).
#include "msgauth/dmarc.h"

#include "common/address.h"
#include "msgauth/dkim_tags.h"

namespace mta::msgauth {

namespace {

// Removes comments (nested, with quoted-pairs) outside quoted strings; false when unbalanced.
bool strip_comments(std::string_view in, std::string& out) {
    out.clear();
    int depth = 0;
    bool quoted = false;
    for (std::size_t i = 0; i < in.size(); i++) {
        char c = in[i];
        if (c == '\\' && (quoted || depth > 0)) {
            if (++i == in.size()) return false;
            if (depth == 0) out.append({c, in[i]});
            continue;
        }
        if (depth > 0) {
            depth += c == '(' ? 1 : c == ')' ? -1 : 0;
            if (depth == 0) out.push_back(' ');
            continue;
        }
        if (c == '"') quoted = !quoted;
        if (!quoted && c == '(') {
            depth = 1;
            continue;
        }
        if (!quoted && c == ')') return false;
        out.push_back(c);
    }
    return depth == 0 && !quoted;
}

}  // namespace

std::optional<std::string> from_domain(const std::vector<HeaderField>& fields, std::string& err) {
    const HeaderField* from = nullptr;
    for (const HeaderField& f : fields) {
        if (!iequals(f.name, "From")) continue;
        if (from) {
            err = "more than one From field";
            return std::nullopt;
        }
        from = &f;
    }
    if (!from) {
        err = "no From field";
        return std::nullopt;
    }
    std::string v;
    if (!strip_comments(from->value(), v)) {
        err = "unbalanced From field";
        return std::nullopt;
    }
    // Find the angle-addr (at most one) outside quoted strings; commas or a ':' there mean a list or group.
    std::size_t open = std::string::npos, close = std::string::npos;
    bool quoted = false;
    for (std::size_t i = 0; i < v.size(); i++) {
        char c = v[i];
        if (c == '\\' && quoted) {
            i++;
            continue;
        }
        if (c == '"') quoted = !quoted;
        if (quoted) continue;
        if (c == '<') {
            if (open != std::string::npos) break;
            open = i;
        } else if (c == '>' && open != std::string::npos && close == std::string::npos) {
            close = i;
        } else if ((c == ',' || c == ':' || c == ';') && (open == std::string::npos || close != std::string::npos)) {
            err = "From field is not a single mailbox";
            return std::nullopt;
        }
    }
    std::string_view addr(v);
    if (open != std::string::npos) {
        if (close == std::string::npos || v.find('<', open + 1) != std::string::npos) {
            err = "malformed From address";
            return std::nullopt;
        }
        addr = addr.substr(open + 1, close - open - 1);
    }
    std::size_t at = addr.rfind('@');
    std::string_view dom = at == std::string_view::npos ? std::string_view() : addr.substr(at + 1);
    auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!dom.empty() && blank(dom.front())) dom.remove_prefix(1);
    while (!dom.empty() && blank(dom.back())) dom.remove_suffix(1);
    if (!dom.empty() && dom.back() == '.') dom.remove_suffix(1);
    std::string d = addr::lower(dom);
    if (!valid_dns_name(d, false)) {
        err = "no usable domain in the From address";
        return std::nullopt;
    }
    return d;
}

DmarcCheck::DmarcCheck(const PublicSuffixList& psl, DmarcInput input) : psl_(psl), in_(std::move(input)) {
    in_.from_domain = addr::lower(in_.from_domain);
    if (!valid_dns_name(in_.from_domain, false)) {
        finish(AuthResult::none, "no usable From domain");
        return;
    }
    org_ = psl_.organizational_domain(in_.from_domain);
    query_ = DnsQuery{"_dmarc." + in_.from_domain, DnsType::txt};
    if (query_.name.size() > kMaxDomainText) {  // cannot exist: go straight to the organizational domain
        DnsAnswer none{DnsAnswer::Status::nxdomain, {}};
        answer(none);
    }
}

void DmarcCheck::finish(AuthResult r, std::string reason) {
    done_ = true;
    verdict_.result = r;
    verdict_.reason = std::move(reason);
}

void DmarcCheck::answer(const DnsAnswer& a) {
    if (done_) return;
    if (a.status == DnsAnswer::Status::error) return finish(AuthResult::temperror, "DNS error for " + query_.name);
    const std::string* found = nullptr;
    for (const std::string& r : a.records) {
        if (!is_dmarc_record(r)) continue;
        if (found) return finish(AuthResult::permerror, "more than one DMARC record at " + query_.name);
        found = &r;
    }
    if (!found) {
        if (at_org_ || org_ == in_.from_domain) return finish(AuthResult::none, "no DMARC record");
        at_org_ = true;
        query_ = DnsQuery{"_dmarc." + org_, DnsType::txt};
        return;
    }
    DmarcRecord rec;
    std::string err;
    if (!parse_dmarc_record(*found, rec, err)) return finish(AuthResult::permerror, "unusable DMARC record: " + err);
    evaluate(rec);
}

void DmarcCheck::evaluate(const DmarcRecord& rec) {
    const std::string& from = in_.from_domain;
    verdict_.record_domain = at_org_ ? org_ : from;
    verdict_.spf_aligned = in_.spf == AuthResult::pass && dmarc_aligned(in_.spf_domain, from, rec.aspf, psl_);
    for (const DmarcInput::Dkim& d : in_.dkim)
        verdict_.dkim_aligned = verdict_.dkim_aligned ||
                                (d.result == AuthResult::pass && dmarc_aligned(d.domain, from, rec.adkim, psl_));
    // sp= governs subdomains when the record was found at the organizational domain (§6.6.3).
    verdict_.policy = at_org_ && rec.subdomain_policy ? *rec.subdomain_policy : rec.policy;
    if (verdict_.spf_aligned || verdict_.dkim_aligned) return finish(AuthResult::pass, "");

    switch (verdict_.policy) {
        case DmarcPolicy::none: verdict_.disposition = DmarcDisposition::none; break;
        case DmarcPolicy::quarantine: verdict_.disposition = DmarcDisposition::quarantine; break;
        case DmarcPolicy::reject: verdict_.disposition = DmarcDisposition::reject; break;
    }
    // §6.6.4: a message pct leaves out gets the next milder treatment: reject -> quarantine -> none.
    if (verdict_.policy != DmarcPolicy::none && in_.random_percent >= rec.pct) {
        verdict_.sampled_out = true;
        verdict_.disposition =
            verdict_.policy == DmarcPolicy::reject ? DmarcDisposition::quarantine : DmarcDisposition::none;
    }
    finish(AuthResult::fail, "no aligned SPF or DKIM pass");
}

}  // namespace mta::msgauth
