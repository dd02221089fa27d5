// DKIM tag=value lists, DKIM-Signature values and key records: strict and bounded (see dkim_tags.h).
#include "msgauth/dkim_tags.h"


#include "common/address.h"

namespace mta::msgauth {

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
    return s;
}

// Splits on ':' and trims whitespace around each element (h=, q=, t=, s= lists).
std::vector<std::string_view> split_colon(std::string_view s) {
    std::vector<std::string_view> out;
    for (;;) {
        std::size_t c = s.find(':');
        out.push_back(trim(s.substr(0, c)));
        if (c == std::string_view::npos) return out;
        s.remove_prefix(c + 1);
    }
}

bool list_has(std::string_view list, std::string_view item) {
    for (std::string_view e : split_colon(list))
        if (iequals(e, item)) return true;
    return false;
}

// 1..max_digits decimal digits into a uint64_t.
bool parse_number(std::string_view s, std::size_t max_digits, uint64_t& out) {
    if (s.empty() || s.size() > max_digits) return false;
    uint64_t v = 0;
    for (char c : s) {
        if (!is_digit(c)) return false;
        if (v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    out = v;
    return true;
}

bool parse_canon(std::string_view s, DkimCanon& out) {
    if (iequals(s, "simple")) out = DkimCanon::simple;
    else if (iequals(s, "relaxed")) out = DkimCanon::relaxed;
    else return false;
    return true;
}

bool fail(std::string& err, std::string text) {
    err = std::move(text);
    return false;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
        if (x != y) return false;
    }
    return true;
}

bool valid_dns_name(std::string_view name, bool allow_underscore) {
    if (name.empty() || name.size() > kMaxDomainText) return false;
    std::size_t label = 0;
    for (std::size_t i = 0; i <= name.size(); i++) {
        if (i == name.size() || name[i] == '.') {
            if (label == 0 || label > 63) return false;
            if (name[i - 1] == '-' || name[i - label] == '-') return false;
            label = 0;
            continue;
        }
        char c = name[i];
        bool ok = is_alpha(c) || is_digit(c) || c == '-' || (allow_underscore && c == '_');
        if (!ok) return false;
        label++;
    }
    return true;
}

const Tag* find_tag(const std::vector<Tag>& tags, std::string_view name) {
    for (const Tag& t : tags)
        if (t.name == name) return &t;
    return nullptr;
}

bool parse_tag_list(std::string_view in, std::vector<Tag>& out, std::string& err) {
    out.clear();
    if (in.size() > kMaxTagListBytes) return fail(err, "tag list too long");
    std::size_t pos = 0;
    const std::size_t n = in.size();
    for (;;) {
        while (pos < n && is_ws(in[pos])) pos++;
        if (pos == n) return true;
        if (!is_alpha(in[pos])) return fail(err, "bad tag name");
        std::size_t name_begin = pos;
        while (pos < n && (is_alpha(in[pos]) || is_digit(in[pos]) || in[pos] == '_')) pos++;
        Tag t;
        t.name = in.substr(name_begin, pos - name_begin);
        while (pos < n && is_ws(in[pos])) pos++;
        if (pos == n || in[pos] != '=') return fail(err, "tag " + std::string(t.name) + " without '='");
        t.raw_begin = ++pos;
        while (pos < n && in[pos] != ';') {
            auto c = static_cast<unsigned char>(in[pos]);
            if ((c < 0x21 || c == 0x7f) && !is_ws(in[pos])) return fail(err, "control character in tag value");
            pos++;
        }
        t.raw_end = pos;
        t.value = trim(in.substr(t.raw_begin, t.raw_end - t.raw_begin));
        if (find_tag(out, t.name)) return fail(err, "duplicate tag " + std::string(t.name));
        if (out.size() == kMaxTags) return fail(err, "too many tags");
        out.push_back(t);
        if (pos == n) return true;
        pos++;  // ';'
    }
}

bool base64_decode(std::string_view in, std::string& out) {
    auto r = mta::base64_decode(in, Base64Mode::folded);
    if (!r) return false;
    out = std::move(*r);
    return true;
}

const char* algorithm_name(DkimAlgorithm a) {
    switch (a) {
        case DkimAlgorithm::rsa_sha256: return "rsa-sha256";
        case DkimAlgorithm::ed25519_sha256: return "ed25519-sha256";
        case DkimAlgorithm::rsa_sha1: return "rsa-sha1";
    }
    return "?";
}

bool parse_dkim_signature(std::string_view value, DkimSignature& out, std::string& err) {
    out = DkimSignature{};
    std::vector<Tag> tags;
    if (!parse_tag_list(value, tags, err)) return false;
    for (const char* required : {"v", "a", "b", "bh", "d", "h", "s"})
        if (!find_tag(tags, required)) return fail(err, std::string("missing ") + required + "= tag");

    if (std::string_view v = find_tag(tags, "v")->value; v != "1")
        return fail(err, "unsupported version v=" + std::string(v.substr(0, 16)));

    std::string_view a = find_tag(tags, "a")->value;
    if (iequals(a, "rsa-sha256")) out.algorithm = DkimAlgorithm::rsa_sha256;
    else if (iequals(a, "ed25519-sha256")) out.algorithm = DkimAlgorithm::ed25519_sha256;
    else if (iequals(a, "rsa-sha1")) out.algorithm = DkimAlgorithm::rsa_sha1;
    else return fail(err, "unsupported algorithm a=" + std::string(a.substr(0, 32)));

    const Tag* b = find_tag(tags, "b");
    if (!base64_decode(b->value, out.signature) || out.signature.empty()) return fail(err, "b= is not base64");
    for (char c : b->value)
        if (!is_ws(c)) out.b_text.push_back(c);
    out.b_raw_begin = b->raw_begin;
    out.b_raw_end = b->raw_end;
    if (!base64_decode(find_tag(tags, "bh")->value, out.body_hash) || out.body_hash.empty())
        return fail(err, "bh= is not base64");

    if (const Tag* c = find_tag(tags, "c")) {
        std::string_view cv = c->value;
        std::size_t slash = cv.find('/');
        if (!parse_canon(cv.substr(0, slash), out.header_canon)) return fail(err, "unknown canonicalization c=");
        out.body_canon = DkimCanon::simple;
        if (slash != std::string_view::npos && !parse_canon(cv.substr(slash + 1), out.body_canon))
            return fail(err, "unknown canonicalization c=");
    }

    out.domain = addr::lower(find_tag(tags, "d")->value);
    if (!valid_dns_name(out.domain, false)) return fail(err, "bad domain d=");
    out.selector = addr::lower(find_tag(tags, "s")->value);
    if (!valid_dns_name(out.selector, true) || out.selector.size() + out.domain.size() + 12 > kMaxDomainText)
        return fail(err, "bad selector s=");

    for (std::string_view h : split_colon(find_tag(tags, "h")->value)) {
        if (h.empty()) return fail(err, "empty header name in h=");
        for (char c : h)
            if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
                return fail(err, "bad header name in h=");
        if (out.signed_headers.size() == kMaxSignedHeaders) return fail(err, "too many header names in h=");
        out.signed_headers.push_back(addr::lower(h));
    }
    bool from = false;
    for (const std::string& h : out.signed_headers) from = from || h == "from";
    if (!from) return fail(err, "From is not signed");

    if (const Tag* i = find_tag(tags, "i")) {
        std::size_t at = i->value.rfind('@');
        if (at == std::string_view::npos) return fail(err, "i= without '@'");
        std::string idom = addr::lower(i->value.substr(at + 1));
        bool within = idom == out.domain ||
                      (idom.size() > out.domain.size() && idom.ends_with(out.domain) &&
                       idom[idom.size() - out.domain.size() - 1] == '.');
        if (!within) return fail(err, "i= is not within d=");
        out.identity = std::string(i->value);
    } else {
        out.identity = "@" + out.domain;
    }

    if (const Tag* q = find_tag(tags, "q"); q && !list_has(q->value, "dns/txt")) return fail(err, "q= without dns/txt");

    uint64_t num = 0;
    if (const Tag* l = find_tag(tags, "l")) {
        if (!parse_number(l->value, 19, num)) return fail(err, "bad l= value");
        out.body_length = num;
    }
    if (const Tag* t = find_tag(tags, "t")) {
        if (!parse_number(t->value, 12, num)) return fail(err, "bad t= value");
        out.timestamp = num;
    }
    if (const Tag* x = find_tag(tags, "x")) {
        if (!parse_number(x->value, 12, num)) return fail(err, "bad x= value");
        out.expiration = num;
        if (out.timestamp && num < *out.timestamp) return fail(err, "x= is before t=");
    }
    return true;
}

bool parse_dkim_key(std::string_view record, DkimKey& out, std::string& err) {
    out = DkimKey{};
    std::vector<Tag> tags;
    if (!parse_tag_list(record, tags, err)) return false;
    if (const Tag* v = find_tag(tags, "v"); v && (v != &tags.front() || v->value != "DKIM1"))
        return fail(err, "key record v= is not a leading DKIM1");
    if (const Tag* k = find_tag(tags, "k")) {
        if (iequals(k->value, "rsa")) out.type = DkimKeyType::rsa;
        else if (iequals(k->value, "ed25519")) out.type = DkimKeyType::ed25519;
        else return fail(err, "unknown key type k=" + std::string(k->value.substr(0, 32)));
    }
    const Tag* p = find_tag(tags, "p");
    if (!p) return fail(err, "key record without p=");
    if (!base64_decode(p->value, out.public_key)) return fail(err, "key p= is not base64");
    out.revoked = out.public_key.empty();
    if (const Tag* h = find_tag(tags, "h")) out.sha256_allowed = list_has(h->value, "sha256");
    if (const Tag* s = find_tag(tags, "s")) out.email_service = list_has(s->value, "email") || list_has(s->value, "*");
    if (const Tag* t = find_tag(tags, "t")) {
        out.testing = list_has(t->value, "y");
        out.strict_identity = list_has(t->value, "s");
    }
    return true;
}

}  // namespace mta::msgauth
