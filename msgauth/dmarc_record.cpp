// DMARC record parsing, organizational domains and alignment (see dmarc_record.h).
#include "msgauth/dmarc_record.h"

#include <cstdio>

#include "common/address.h"
#include "msgauth/dkim_tags.h"

namespace mta::msgauth {

namespace {

struct FileClose {
    void operator()(FILE* f) const { fclose(f); }
};

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool parse_policy(std::string_view v, DmarcPolicy& out) {
    if (iequals(v, "none")) out = DmarcPolicy::none;
    else if (iequals(v, "quarantine")) out = DmarcPolicy::quarantine;
    else if (iequals(v, "reject")) out = DmarcPolicy::reject;
    else return false;
    return true;
}

bool parse_alignment(std::string_view v, DmarcAlignment& out) {
    if (iequals(v, "r")) out = DmarcAlignment::relaxed;
    else if (iequals(v, "s")) out = DmarcAlignment::strict;
    else return false;
    return true;
}

bool parse_uint(std::string_view v, std::size_t max_digits, uint64_t& out) {
    if (v.empty() || v.size() > max_digits) return false;
    out = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return false;
        out = out * 10 + static_cast<uint64_t>(c - '0');
    }
    return true;
}

// dmarc-uri = URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ]; URI checked as scheme ":" something.
bool valid_report_uri(std::string_view u) {
    std::size_t bang = u.rfind('!');
    if (bang != std::string_view::npos) {
        std::string_view size = u.substr(bang + 1);
        if (!size.empty() && std::string_view("kmgtKMGT").find(size.back()) != std::string_view::npos)
            size.remove_suffix(1);
        uint64_t n = 0;
        if (!parse_uint(size, 19, n)) return false;
        u = u.substr(0, bang);
    }
    std::size_t colon = u.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == u.size()) return false;
    for (std::size_t i = 0; i < colon; i++) {
        char c = u[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && ((c >= '0' && c <= '9') || c == '+' ||
                                                                                    c == '-' || c == '.'));
        if (!ok) return false;
    }
    for (char c : u)
        if (c == ' ' || c == '\t' || c == '"' || c == '<' || c == '>') return false;
    return true;
}

std::vector<std::string> parse_uris(std::string_view v) {
    std::vector<std::string> out;
    for (;;) {
        std::size_t comma = v.find(',');
        std::string_view u = trim(v.substr(0, comma));
        if (valid_report_uri(u)) out.emplace_back(u);
        if (comma == std::string_view::npos) return out;
        v.remove_prefix(comma + 1);
    }
}

}  // namespace

const char* policy_name(DmarcPolicy p) {
    switch (p) {
        case DmarcPolicy::none: return "none";
        case DmarcPolicy::quarantine: return "quarantine";
        case DmarcPolicy::reject: return "reject";
    }
    return "none";
}

bool is_dmarc_record(std::string_view txt) {
    std::vector<Tag> tags;
    std::string err;
    // Only the first tag matters here; the rest may still be broken.
    std::size_t semi = txt.find(';');
    return parse_tag_list(txt.substr(0, semi), tags, err) && tags.size() == 1 && tags[0].name == "v" &&
           tags[0].value == "DMARC1";
}

bool parse_dmarc_record(std::string_view txt, DmarcRecord& out, std::string& err) {
    out = DmarcRecord{};
    std::vector<Tag> tags;
    if (!parse_tag_list(txt, tags, err)) return false;
    if (tags.empty() || tags[0].name != "v" || tags[0].value != "DMARC1") {
        err = "not a DMARC1 record";
        return false;
    }
    if (const Tag* t = find_tag(tags, "rua")) out.rua = parse_uris(t->value);
    if (const Tag* t = find_tag(tags, "ruf")) out.ruf = parse_uris(t->value);
    const Tag* p = find_tag(tags, "p");
    const Tag* sp = find_tag(tags, "sp");
    bool p_ok = p && parse_policy(p->value, out.policy);
    DmarcPolicy sub = DmarcPolicy::none;
    bool sp_ok = !sp || parse_policy(sp->value, sub);
    if (sp && sp_ok) out.subdomain_policy = sub;
    if (!p_ok || !sp_ok) {
        if (out.rua.empty()) {
            err = p_ok ? "invalid sp=" : "missing or invalid p=";
            return false;
        }
        out.policy = DmarcPolicy::none;  // §6.6.3 step 6: act as if p=none was published
        out.subdomain_policy.reset();
        out.policy_defaulted = true;
    }
    uint64_t n = 0;
    if (const Tag* t = find_tag(tags, "adkim")) parse_alignment(t->value, out.adkim);
    if (const Tag* t = find_tag(tags, "aspf")) parse_alignment(t->value, out.aspf);
    if (const Tag* t = find_tag(tags, "pct"); t && parse_uint(t->value, 3, n) && n <= 100)
        out.pct = static_cast<unsigned>(n);
    if (const Tag* t = find_tag(tags, "ri"); t && parse_uint(t->value, 10, n) && n <= UINT32_MAX)
        out.ri = static_cast<uint32_t>(n);
    if (const Tag* t = find_tag(tags, "fo"); t && !t->value.empty()) out.fo = std::string(t->value);
    if (const Tag* t = find_tag(tags, "rf"); t && !t->value.empty()) out.rf = std::string(t->value);
    return true;
}

bool PublicSuffixList::load_file(const std::string& path, std::string& err) {
    ctx_.reset(psl_load_file(path.c_str()));
    if (!ctx_) err = path + ": not a readable Public Suffix List";
    return ctx_ != nullptr;
}

bool PublicSuffixList::load_text(std::string_view text, std::string& err) {
    std::string copy(text);  // fmemopen wants a writable buffer
    std::unique_ptr<FILE, FileClose> f(fmemopen(copy.data(), copy.size(), "r"));
    if (f) ctx_.reset(psl_load_fp(f.get()));
    if (!ctx_) err = "not a Public Suffix List";
    return ctx_ != nullptr;
}

bool PublicSuffixList::load_builtin(std::string& err) {
    builtin_ = psl_builtin();
    if (!builtin_) err = "libpsl has no built-in list";
    return builtin_ != nullptr;
}

std::string PublicSuffixList::organizational_domain(std::string_view domain) const {
    while (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    std::string name = addr::lower(domain);
    if (!get() || name.empty() || name.find('\0') != std::string::npos) return name;
    const char* reg = psl_registrable_domain(get(), name.c_str());
    return reg ? std::string(reg) : name;
}

bool dmarc_aligned(std::string_view a, std::string_view b, DmarcAlignment mode, const PublicSuffixList& psl) {
    while (!a.empty() && a.back() == '.') a.remove_suffix(1);
    while (!b.empty() && b.back() == '.') b.remove_suffix(1);
    if (a.empty() || b.empty()) return false;
    if (mode == DmarcAlignment::strict) return iequals(a, b);
    return psl.organizational_domain(a) == psl.organizational_domain(b);
}

}  // namespace mta::msgauth
