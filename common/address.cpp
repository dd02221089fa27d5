// RFC 5321 §4.1.2 path parser (with RFC 6531 UTF-8 and RFC 3461 xtext) over untrusted bytes.
// Two passes: a quote-aware lexical scan that bounds and sanitises the path, then the grammar.
#include "common/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

namespace mta::addr {
namespace {

constexpr std::string_view kAtextPunct = "!#$%&'*+-/=?^_`{|}~";

bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// '%' and '!' are plain atext here on purpose: only the relay policy may give them meaning.
bool is_atext(unsigned char c) {
    return is_alpha(c) || is_digit(c) || kAtextPunct.find(static_cast<char>(c)) != std::string_view::npos;
}

// qtextSMTP (RFC 5321): printable ASCII and space, minus '"' and '\'.
bool is_qtext(unsigned char c) { return c >= 32 && c <= 126 && c != '"' && c != '\\'; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
        if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
        if (x != y) return false;
    }
    return true;
}

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629 table: no overlongs, no surrogates,
// nothing above U+10FFFF), or 0 if malformed. Callers only ask for bytes >= 0x80.
std::size_t utf8_len(std::string_view s, std::size_t i) {
    auto at = [&](std::size_t k) -> unsigned { return static_cast<unsigned char>(s[k]); };
    const unsigned c = at(i);
    std::size_t n = 0;
    unsigned lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c == 0xe0) { n = 3; lo = 0xa0; }
    else if (c == 0xed) { n = 3; hi = 0x9f; }
    else if (c >= 0xe1 && c <= 0xef) n = 3;
    else if (c == 0xf0) { n = 4; lo = 0x90; }
    else if (c == 0xf4) { n = 4; hi = 0x8f; }
    else if (c >= 0xf1 && c <= 0xf3) n = 4;
    else return 0;
    if (s.size() - i < n) return 0;
    if (at(i + 1) < lo || at(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if (at(i + k) < 0x80 || at(i + k) > 0xbf) return 0;
    return n;
}

// Snum 3("." Snum), each 0..255. Leading zeros are refused: "010" reads as octal to some tools.
bool valid_ipv4(std::string_view s) {
    int parts = 0;
    std::size_t i = 0;
    while (true) {
        std::size_t start = i;
        unsigned v = 0;
        while (i < s.size() && is_digit(static_cast<unsigned char>(s[i])) && i - start < 3)
            v = v * 10 + static_cast<unsigned>(s[i++] - '0');
        std::size_t len = i - start;
        if (len == 0 || v > 255 || (len > 1 && s[start] == '0')) return false;
        if (++parts == 4) return i == s.size();
        if (i >= s.size() || s[i] != '.') return false;
        ++i;
    }
}

// "[...]" with an IPv4 or "IPv6:" body; General-address-literal tags are refused.
bool valid_literal(std::string_view d) {
    if (d.size() < 3 || d.front() != '[' || d.back() != ']') return false;
    std::string_view body = d.substr(1, d.size() - 2);
    constexpr std::string_view tag = "IPv6:";
    if (body.size() > tag.size() && iequals(body.substr(0, tag.size()), tag)) {
        std::string_view a = body.substr(tag.size());
        if (a.size() > INET6_ADDRSTRLEN) return false;
        for (char c : a)  // inet_pton needs a C string: no NUL or junk may hide in it
            if (!(is_digit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f') ||
                  (c >= 'A' && c <= 'F') || c == ':' || c == '.'))
                return false;
        std::string z(a);
        in6_addr out{};
        return inet_pton(AF_INET6, z.c_str(), &out) == 1;
    }
    return valid_ipv4(body);
}

// sub-domain *("." sub-domain) of LDH labels (or U-labels with SMTPUTF8). No trailing dot.
bool valid_dot_domain(std::string_view d, bool smtputf8) {
    if (d.empty() || d.size() > kMaxDomain) return false;
    std::size_t label_start = 0;
    for (std::size_t i = 0; i <= d.size();) {
        if (i == d.size() || d[i] == '.') {
            std::size_t len = i - label_start;
            if (len == 0 || len > 63) return false;
            if (d[label_start] == '-' || d[i - 1] == '-') return false;
            label_start = ++i;
            continue;
        }
        const unsigned char c = static_cast<unsigned char>(d[i]);
        if (c >= 0x80) {
            if (!smtputf8) return false;
            std::size_t n = utf8_len(d, i);
            if (n == 0) return false;
            i += n;
        } else if (is_alpha(c) || is_digit(c) || c == '-') {
            ++i;
        } else {
            return false;
        }
    }
    return true;
}

// Dot-string = Atom *("." Atom); bytes >= 0x80 count as atext (they were vetted beforehand).
bool is_dot_string(std::string_view s) {
    if (s.empty() || s.front() == '.' || s.back() == '.') return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '.') {
            if (s[i + 1] == '.') return false;  // safe: s.back() != '.'
        } else if (!is_atext(c) && c < 0x80) {
            return false;
        }
    }
    return true;
}

PathResult fail(const char* text, const char* code = "5.1.3") {
    PathResult r;
    r.error = text;
    r.enhanced = code;
    return r;
}

constexpr const char* kSyntax = "Syntax error in mailbox address";
constexpr const char* kTooLong = "Address too long";

// Grammar of what sits between '<' and '>': [A-d-l ":"] Mailbox, or empty.
PathResult parse_inner(std::string_view in, const PathOptions& opts) {
    PathResult r;
    if (in.empty()) {
        if (!opts.allow_null) return fail("Null address not allowed here");
        r.ok = true;
        r.mailbox.null_path = true;
        return r;
    }
    std::size_t pos = 0;
    bool route = false;
    if (in[0] == '@') {  // source route: validated for syntax, then forgotten (RFC 5321 §3.3)
        route = true;
        while (true) {
            if (pos >= in.size() || in[pos] != '@') return fail("Syntax error in source route");
            std::size_t start = ++pos;
            if (pos < in.size() && in[pos] == '[') {  // literal may contain ':' itself
                std::size_t close = in.find(']', pos);
                if (close == std::string_view::npos) return fail("Syntax error in source route");
                pos = close + 1;
            } else {
                while (pos < in.size() && in[pos] != ',' && in[pos] != ':') ++pos;
            }
            if (!valid_domain(in.substr(start, pos - start), opts.smtputf8))
                return fail("Syntax error in source route");
            if (pos >= in.size()) return fail("Syntax error in source route");
            if (in[pos++] == ':') break;
            if (in[pos - 1] != ',') return fail("Syntax error in source route");
        }
    }

    Mailbox& mb = r.mailbox;
    const std::size_t local_start = pos;
    if (pos < in.size() && in[pos] == '"') {
        mb.quoted = true;
        ++pos;
        bool closed = false;
        while (pos < in.size()) {
            const unsigned char c = static_cast<unsigned char>(in[pos]);
            if (c == '"') { ++pos; closed = true; break; }
            if (c == '\\') {  // quoted-pairSMTP: backslash then one of %d32-126
                if (pos + 1 >= in.size()) return fail(kSyntax);
                const unsigned char e = static_cast<unsigned char>(in[pos + 1]);
                if (e < 32 || e > 126) return fail(kSyntax);
                mb.local += static_cast<char>(e);
                pos += 2;
            } else if (is_qtext(c) || c >= 0x80) {
                mb.local += static_cast<char>(c);
                ++pos;
            } else {
                return fail(kSyntax);
            }
        }
        if (!closed) return fail(kSyntax);
    } else {
        while (pos < in.size()) {
            const unsigned char c = static_cast<unsigned char>(in[pos]);
            if (!(is_atext(c) || c == '.' || c >= 0x80)) break;
            ++pos;
        }
        mb.local.assign(in.substr(local_start, pos - local_start));
        if (!is_dot_string(mb.local)) return fail(kSyntax);
    }
    if (mb.local.empty()) return fail(kSyntax);
    // Measured as written (quotes and escapes included): the canonical form is never longer.
    if (pos - local_start > kMaxLocalPart) return fail(kTooLong);

    if (pos == in.size()) {  // no domain: only the special "<Postmaster>" may do that
        if (opts.allow_postmaster && !route && !mb.quoted && iequals(mb.local, "postmaster")) {
            mb.local = "Postmaster";
            r.ok = true;
            return r;
        }
        return fail(kSyntax);
    }
    if (in[pos] != '@') return fail(kSyntax);
    std::string_view dom = in.substr(pos + 1);
    if (dom.size() > kMaxDomain) return fail(kTooLong);
    if (!valid_domain(dom, opts.smtputf8)) return fail("Syntax error in domain");
    mb.literal = dom.front() == '[';
    mb.domain = mb.literal ? std::string(dom) : lower(dom);
    r.ok = true;
    return r;
}

}  // namespace

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    return out;
}

bool utf8_valid(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        if (static_cast<unsigned char>(s[i]) < 0x80) { ++i; continue; }
        std::size_t n = utf8_len(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

bool valid_domain(std::string_view d, bool smtputf8) {
    if (!d.empty() && d.front() == '[') return d.size() <= kMaxDomain && valid_literal(d);
    return valid_dot_domain(d, smtputf8);
}

std::string Mailbox::str() const {
    if (null_path) return {};
    std::string out;
    if (is_dot_string(local)) {
        out = local;
    } else {
        out.reserve(local.size() + 2);
        out += '"';
        for (char c : local) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        out += '"';
    }
    if (!domain.empty()) {
        out += '@';
        out += domain;
    }
    return out;
}

PathResult parse_path(std::string_view arg, const PathOptions& opts) {
    std::size_t pos = 0;
    while (pos < arg.size() && arg[pos] == ' ') ++pos;  // RFC says none; Postfix and others allow it
    if (pos >= arg.size() || arg[pos] != '<') return fail("Missing '<' before address");
    const std::size_t open = pos++;

    // Lexical pass: find the '>' that is not inside a quoted-string and vet every byte on the way,
    // so the grammar below can assume clean, bounded input.
    bool in_quote = false;
    std::size_t close = std::string_view::npos;
    while (pos < arg.size()) {
        const unsigned char c = static_cast<unsigned char>(arg[pos]);
        if (is_ctl(c)) return fail("Invalid character in address");
        if (c >= 0x80) {
            if (!opts.smtputf8) return fail("Non-ASCII address requires SMTPUTF8", "5.6.7");
            std::size_t n = utf8_len(arg, pos);
            if (n == 0) return fail("Invalid UTF-8 in address");
            pos += n;
            continue;
        }
        if (in_quote && c == '\\') {
            // An escaped '"', '\\' or '>' must neither end the quote nor the path; any other
            // escaped byte is just scanned (and vetted) as usual on the next round.
            if (pos + 1 < arg.size() && (arg[pos + 1] == '"' || arg[pos + 1] == '\\' || arg[pos + 1] == '>')) {
                pos += 2;
                continue;
            }
        } else if (c == '"') {
            in_quote = !in_quote;
        } else if (c == '>' && !in_quote) {
            close = pos;
            break;
        }
        ++pos;
    }
    if (close == std::string_view::npos) return fail("Missing '>' after address");
    if (close - open + 1 > kMaxPath) return fail(kTooLong);

    std::size_t after = close + 1;
    if (after < arg.size() && arg[after] != ' ') return fail("Syntax error after '>'");
    while (after < arg.size() && arg[after] == ' ') ++after;
    std::string_view rest = arg.substr(after);
    for (char c : rest)
        if (is_ctl(static_cast<unsigned char>(c))) return fail("Invalid character in parameters", "5.5.4");

    PathResult r = parse_inner(arg.substr(open + 1, close - open - 1), opts);
    if (!r.ok) return r;
    // From the kept parts only: an 8-bit source route is discarded and must not mark the mailbox.
    for (char c : r.mailbox.local + r.mailbox.domain)
        if (static_cast<unsigned char>(c) >= 0x80) r.mailbox.utf8 = true;
    r.rest = rest;
    return r;
}

std::optional<std::string> xtext_decode(std::string_view s) {
    auto hex = [](unsigned char c) -> int {
        if (is_digit(c)) return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;  // RFC 3461 says upper case; be lenient
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '+') {
            if (s.size() - i < 3) return std::nullopt;
            int h = hex(static_cast<unsigned char>(s[i + 1])), l = hex(static_cast<unsigned char>(s[i + 2]));
            if (h < 0 || l < 0) return std::nullopt;
            const int v = h * 16 + l;
            // Decoded text ends up in queue files and DSNs: no control bytes, no 8-bit.
            if (v < 0x20 || v >= 0x7f) return std::nullopt;
            out += static_cast<char>(v);
            i += 2;
        } else if (c >= 0x21 && c <= 0x7e && c != '=') {
            out += static_cast<char>(c);
        } else {
            return std::nullopt;
        }
    }
    return out;
}

std::string xtext_encode(std::string_view s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (char ch : s) {
        const unsigned char c = static_cast<unsigned char>(ch);
        if (c >= 0x21 && c <= 0x7e && c != '+' && c != '=') {
            out += ch;
        } else {
            out += '+';
            out += kHex[c >> 4];
            out += kHex[c & 0x0f];
        }
    }
    return out;
}

}  // namespace mta::addr
