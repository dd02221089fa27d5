// SPF check_host() state machine (see spf.h).
#include "msgauth/spf.h"

#include "common/address.h"
#include "msgauth/dkim_tags.h"

namespace mta::msgauth {

struct SpfCheck::Frame {
    std::string domain;
    SpfRecord record;
    bool loaded = false;
    bool included = false;    // pushed by include: finding no record is a permerror
    bool redirected = false;  // reached through redirect=: likewise
    std::size_t next = 0;     // the directive being evaluated
};

namespace {

AuthResult qualifier_result(SpfQualifier q) {
    switch (q) {
        case SpfQualifier::pass: return AuthResult::pass;
        case SpfQualifier::fail: return AuthResult::fail;
        case SpfQualifier::softfail: return AuthResult::softfail;
        case SpfQualifier::neutral: return AuthResult::neutral;
    }
    return AuthResult::neutral;
}

bool is_subdomain_or_same(std::string_view name, std::string_view domain) {
    return name == domain ||
           (name.size() > domain.size() && name.ends_with(domain) && name[name.size() - domain.size() - 1] == '.');
}

}  // namespace

SpfCheck::SpfCheck(const SpfRequest& req, SpfIdentity identity) : req_(req) {
    sender_ = identity == SpfIdentity::helo || req.sender.empty() ? "postmaster@" + req.helo : req.sender;
    std::size_t at = sender_.rfind('@');
    local_ = at == std::string::npos || at == 0 ? "postmaster" : sender_.substr(0, at);
    sender_domain_ = at == std::string::npos ? sender_ : sender_.substr(at + 1);
    std::string_view d = identity == SpfIdentity::helo ? std::string_view(req.helo) : std::string_view(sender_domain_);
    if (!d.empty() && d.back() == '.') d.remove_suffix(1);
    domain_ = addr::lower(d);
    // §4.3: a malformed or single-label domain has no SPF record to find.
    if (!valid_dns_name(domain_, true) || domain_.find('.') == std::string::npos) {
        finish(AuthResult::none, "no valid domain to check");
        return;
    }
    frames_.push_back(std::make_unique<Frame>());
    frames_.back()->domain = domain_;
    run();
}

SpfCheck::~SpfCheck() = default;
SpfCheck::SpfCheck(SpfCheck&&) noexcept = default;
SpfCheck& SpfCheck::operator=(SpfCheck&&) noexcept = default;

void SpfCheck::finish(AuthResult r, std::string problem) {
    done_ = true;
    wait_ = Wait::none;
    result_ = r;
    problem_ = std::move(problem);
}

void SpfCheck::ask(std::string name, DnsType type, Wait w) {
    if (++queries_ > kSpfMaxQueries) return finish(AuthResult::permerror, "too many DNS queries");
    query_ = DnsQuery{std::move(name), type};
    wait_ = w;
}

void SpfCheck::start_ptr() {
    ptr_state_ = Ptr::running;
    ask(reverse_name(req_.ip), DnsType::ptr, Wait::ptr_names);
}

bool SpfCheck::count_term() {
    if (term_counted_) return true;  // re-entered after a %{p} lookup
    term_counted_ = true;
    if (++terms_ <= kSpfMaxTerms) return true;
    finish(AuthResult::permerror, "more than 10 DNS-querying terms");
    return false;
}

bool SpfCheck::count_void(const DnsAnswer& a) {
    if (in_exp_ || !a.is_void() || ++voids_ <= kSpfMaxVoid) return true;
    finish(AuthResult::permerror, "more than 2 void lookups");
    return false;
}

MacroStatus SpfCheck::expand(std::string_view spec, const std::string& domain, MacroKind kind, std::string& out) const {
    // §7.3 p: the validated name that is <domain>, else one under it, else any, else "unknown".
    std::string p = "unknown";
    for (const std::string& v : validated_)
        if (v == domain || (p == "unknown" && is_subdomain_or_same(v, domain))) p = v;
    if (p == "unknown" && !validated_.empty()) p = validated_.front();
    SpfMacroContext ctx{sender_,  local_,        sender_domain_, domain, req_.ip, req_.helo, req_.receiver,
                        req_.now, ptr_state_ == Ptr::known ? &p : nullptr};
    return expand_macros(spec, ctx, kind, out);
}

// The query name for a mechanism or redirect; false when a %{p} lookup started or the macro failed.
bool SpfCheck::expand_target(const Frame& f, const std::string& spec, std::string& name) {
    if (spec.empty()) {
        name = f.domain;
        return true;
    }
    std::string out;
    switch (expand(spec, f.domain, MacroKind::domain, out)) {
        case MacroStatus::needs_ptr: start_ptr(); return false;
        case MacroStatus::syntax_error: finish(AuthResult::permerror, "macro expansion failed"); return false;
        case MacroStatus::ok: break;
    }
    name = spf_query_name(out);  // "" when nobody could publish it: treated as an empty answer
    return true;
}

void SpfCheck::run() {
    while (!done_ && wait_ == Wait::none) {
        if (in_exp_) {
            step_exp();
            continue;
        }
        Frame& f = *frames_.back();
        if (!f.loaded) ask(f.domain, DnsType::txt, Wait::record);
        else if (f.next < f.record.directives.size()) step_directive(f);
        else step_redirect(f);
    }
}

void SpfCheck::match(Frame& f) {
    const SpfDirective& d = f.record.directives[f.next];
    end_frame(qualifier_result(d.qualifier), d.text);
}

void SpfCheck::advance(Frame& f) {
    f.next++;
    term_counted_ = false;
}

void SpfCheck::step_directive(Frame& f) {
    const SpfDirective& d = f.record.directives[f.next];
    const IpAddress& ip = req_.ip;
    if (d.mechanism == SpfMechanism::all) return match(f);
    if (d.mechanism == SpfMechanism::ip4 || d.mechanism == SpfMechanism::ip6) {
        bool hit = ip.v6 == (d.mechanism == SpfMechanism::ip6) &&
                   ip_in_network(ip, d.network, ip.v6 ? d.cidr6 : d.cidr4);
        return hit ? match(f) : advance(f);
    }
    std::string name;
    if (!expand_target(f, d.domain_spec, name) || !count_term()) return;
    switch (d.mechanism) {
        case SpfMechanism::include: {
            if (name.empty()) return finish(AuthResult::permerror, "include of an invalid domain");
            auto child = std::make_unique<Frame>();
            child->domain = name;
            child->included = true;
            frames_.push_back(std::move(child));
            term_counted_ = false;
            return;
        }
        case SpfMechanism::ptr: {
            if (ptr_state_ != Ptr::known) return start_ptr();
            bool hit = false;
            for (const std::string& v : validated_) hit = hit || (!name.empty() && is_subdomain_or_same(v, name));
            return hit ? match(f) : advance(f);
        }
        default: break;
    }
    if (name.empty()) {  // a name nobody can publish: an empty answer without asking
        if (count_void(DnsAnswer{DnsAnswer::Status::nxdomain, {}})) advance(f);
        return;
    }
    if (d.mechanism == SpfMechanism::a) ask(name, ip.v6 ? DnsType::aaaa : DnsType::a, Wait::a);
    else if (d.mechanism == SpfMechanism::mx) ask(name, DnsType::mx, Wait::mx);
    else ask(name, DnsType::a, Wait::exists);  // exists always asks for A (§5.7)
}

void SpfCheck::step_redirect(Frame& f) {
    if (!f.record.redirect) return end_frame(AuthResult::neutral, "default");
    std::string name;
    if (!expand_target(f, *f.record.redirect, name) || !count_term()) return;
    if (name.empty()) return finish(AuthResult::permerror, "redirect to an invalid domain");
    f.domain = name;
    f.record = SpfRecord{};
    f.loaded = false;
    f.redirected = true;
    f.next = 0;
    term_counted_ = false;
}

void SpfCheck::end_frame(AuthResult r, const std::string& mechanism) {
    std::unique_ptr<Frame> ended = std::move(frames_.back());
    frames_.pop_back();
    if (!frames_.empty()) {  // an include: only its pass is a match (§5.2)
        Frame& parent = *frames_.back();
        return r == AuthResult::pass ? match(parent) : advance(parent);
    }
    mechanism_ = mechanism;
    if (r != AuthResult::fail || !ended->record.exp) return finish(r, "");
    result_ = r;
    in_exp_ = true;
    exp_spec_ = *ended->record.exp;
    exp_domain_ = ended->domain;
}

// §6.2: any failure while building the explanation just leaves it out; the result stays fail.
void SpfCheck::step_exp() {
    std::string out;
    if (!exp_text_known_) {
        MacroStatus s = expand(exp_spec_, exp_domain_, MacroKind::domain, out);
        if (s == MacroStatus::needs_ptr) return start_ptr();
        std::string name = s == MacroStatus::ok ? spf_query_name(out) : "";
        if (name.empty()) return finish(AuthResult::fail, "");
        return ask(name, DnsType::txt, Wait::exp);
    }
    MacroStatus s = expand(exp_text_, exp_domain_, MacroKind::exp, out);
    if (s == MacroStatus::needs_ptr) return start_ptr();
    if (s == MacroStatus::ok) explanation_ = out;
    finish(AuthResult::fail, "");
}

void SpfCheck::answer(const DnsAnswer& a) {
    if (done_ || wait_ == Wait::none) return;
    Wait w = wait_;
    wait_ = Wait::none;
    switch (w) {
        case Wait::record: on_record(a); break;
        case Wait::a:
        case Wait::exists: on_addresses(a); break;
        case Wait::mx: on_mx(a); break;
        case Wait::mx_addr: on_mx_addr(a); break;
        case Wait::ptr_names: on_ptr_names(a); break;
        case Wait::ptr_addr: on_ptr_addr(a); break;
        case Wait::exp: on_exp(a); break;
        case Wait::none: break;
    }
    run();
}

void SpfCheck::on_record(const DnsAnswer& a) {
    Frame& f = *frames_.back();
    if (a.status == DnsAnswer::Status::error)
        return finish(AuthResult::temperror, "DNS error for the SPF record of " + f.domain);
    const std::string* spf = nullptr;
    for (const std::string& r : a.records) {
        if (!is_spf_record(r)) continue;
        if (spf) return finish(AuthResult::permerror, "more than one SPF record for " + f.domain);
        spf = &r;
    }
    if (!spf && !f.included && !f.redirected) return finish(AuthResult::none, "no SPF record for " + f.domain);
    if (!spf) {
        return finish(AuthResult::permerror,
                      std::string(f.included ? "included" : "redirect") + " domain " + f.domain + " has no SPF record");
    }
    std::string err;
    if (!parse_spf_record(*spf, f.record, err)) return finish(AuthResult::permerror, err + " (" + f.domain + ")");
    f.loaded = true;
}

bool SpfCheck::address_matches(const DnsAnswer& a, int cidr4, int cidr6) const {
    for (const std::string& r : a.records) {
        IpAddress addr;
        if (parse_ip(r, addr) && ip_in_network(req_.ip, addr, req_.ip.v6 ? cidr6 : cidr4)) return true;
    }
    return false;
}

void SpfCheck::on_addresses(const DnsAnswer& a) {
    if (a.status == DnsAnswer::Status::error) return finish(AuthResult::temperror, "DNS error for " + query_.name);
    if (!count_void(a)) return;
    Frame& f = *frames_.back();
    const SpfDirective& d = f.record.directives[f.next];
    bool hit = d.mechanism == SpfMechanism::exists ? !a.records.empty() : address_matches(a, d.cidr4, d.cidr6);
    return hit ? match(f) : advance(f);
}

void SpfCheck::on_mx(const DnsAnswer& a) {
    if (a.status == DnsAnswer::Status::error) return finish(AuthResult::temperror, "DNS error for " + query_.name);
    if (!count_void(a)) return;
    if (a.records.size() > kSpfMaxNames)
        return finish(AuthResult::permerror, "more than 10 MX records for " + query_.name);
    names_.clear();
    for (const std::string& r : a.records) {
        std::size_t sp = r.find(' ');
        names_.push_back(sp == std::string::npos ? "" : spf_query_name(std::string_view(r).substr(sp + 1)));
    }
    name_index_ = 0;
    next_mx_addr();
}

void SpfCheck::next_mx_addr() {
    for (; name_index_ < names_.size(); name_index_++) {
        if (names_[name_index_].empty()) continue;  // null MX "." or an unusable name
        return ask(names_[name_index_], req_.ip.v6 ? DnsType::aaaa : DnsType::a, Wait::mx_addr);
    }
    advance(*frames_.back());
}

void SpfCheck::on_mx_addr(const DnsAnswer& a) {
    if (a.status == DnsAnswer::Status::error) return finish(AuthResult::temperror, "DNS error for " + query_.name);
    if (!count_void(a)) return;
    Frame& f = *frames_.back();
    const SpfDirective& d = f.record.directives[f.next];
    if (address_matches(a, d.cidr4, d.cidr6)) return match(f);
    name_index_++;
    next_mx_addr();
}

void SpfCheck::on_ptr_names(const DnsAnswer& a) {
    validated_.clear();
    names_.clear();
    name_index_ = 0;
    // §5.5: a DNS error on the PTR lookup means no validated name, not temperror.
    if (a.status != DnsAnswer::Status::error) {
        if (!count_void(a)) return;
        for (std::size_t i = 0; i < a.records.size() && i < kSpfMaxNames; i++)
            names_.push_back(spf_query_name(a.records[i]));
    }
    next_ptr_addr();
}

void SpfCheck::next_ptr_addr() {
    for (; name_index_ < names_.size(); name_index_++) {
        if (names_[name_index_].empty()) continue;
        return ask(names_[name_index_], req_.ip.v6 ? DnsType::aaaa : DnsType::a, Wait::ptr_addr);
    }
    ptr_state_ = Ptr::known;
}

void SpfCheck::on_ptr_addr(const DnsAnswer& a) {
    // A DNS error on one name skips that name (§5.5).
    if (a.status != DnsAnswer::Status::error) {
        if (!count_void(a)) return;
        const int full = req_.ip.v6 ? 128 : 32;
        if (address_matches(a, full, full)) validated_.push_back(names_[name_index_]);
    }
    name_index_++;
    next_ptr_addr();
}

void SpfCheck::on_exp(const DnsAnswer& a) {
    if (a.status != DnsAnswer::Status::ok || a.records.size() != 1) return finish(AuthResult::fail, "");
    exp_text_ = a.records[0];
    exp_text_known_ = true;
}

}  // namespace mta::msgauth
