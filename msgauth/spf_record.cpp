// SPF record selection and parsing, and IP address helpers (see spf_record.h).
#include "msgauth/spf_record.h"

#include <arpa/inet.h>

#include <algorithm>

#include "msgauth/dkim_tags.h"
#include "msgauth/spf_macro.h"

namespace mta::msgauth {

namespace {

bool fail(std::string& err, std::string text) {
    err = std::move(text);
    return false;
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }

// "0" or a number without leading zeros, at most `max`.
bool parse_cidr(std::string_view s, int max, int& out) {
    if (s.empty() || s.size() > 3 || (s.size() > 1 && s[0] == '0')) return false;
    int v = 0;
    for (char c : s) {
        if (!is_digit(c)) return false;
        v = v * 10 + (c - '0');
    }
    if (v > max) return false;
    out = v;
    return true;
}

// toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
bool is_toplabel(std::string_view l) {
    if (l.empty()) return false;
    bool alpha = false, hyphen = false;
    for (char c : l) {
        if (c == '-') hyphen = true;
        else if (!is_alnum(c)) return false;
        alpha = alpha || is_alpha(c);
    }
    if (!hyphen) return alpha;
    return is_alnum(l.front()) && is_alnum(l.back());
}

// True when the (syntactically valid) macro-string ends in a macro-expand: "%{...}", "%%", "%_" or "%-".
bool ends_with_macro(std::string_view s) {
    bool last = false;
    for (std::size_t i = 0; i < s.size();) {
        if (s[i] == '%' && i + 1 < s.size()) {
            std::size_t close = s[i + 1] == '{' ? s.find('}', i) : i + 1;
            if (close == std::string_view::npos) return false;
            i = close + 1;
            last = true;
        } else {
            i++;
            last = false;
        }
    }
    return last;
}

// domain-spec = macro-string domain-end; domain-end = ( "." toplabel [ "." ] ) / macro-expand
bool valid_domain_spec(std::string_view s) {
    if (s.empty() || !valid_macro_string(s, MacroKind::domain)) return false;
    if (ends_with_macro(s)) return true;
    std::string_view t = s;
    if (t.back() == '.') t.remove_suffix(1);
    std::size_t dot = t.rfind('.');
    return dot != std::string_view::npos && is_toplabel(t.substr(dot + 1));
}

// Splits "/N" and "//N" off the end of an a/mx argument.
bool split_dual_cidr(std::string_view& arg, SpfDirective& d) {
    if (std::size_t p = arg.rfind("//"); p != std::string_view::npos &&
                                         arg.find_first_not_of("0123456789", p + 2) == std::string_view::npos) {
        if (!parse_cidr(arg.substr(p + 2), 128, d.cidr6)) return false;
        arg = arg.substr(0, p);
    }
    if (std::size_t p = arg.rfind('/'); p != std::string_view::npos &&
                                        arg.find_first_not_of("0123456789", p + 1) == std::string_view::npos) {
        if (!parse_cidr(arg.substr(p + 1), 32, d.cidr4)) return false;
        arg = arg.substr(0, p);
    }
    return true;
}

bool parse_directive(std::string_view term, SpfDirective& d, std::string& err) {
    d.text = std::string(term);
    std::string_view t = term;
    switch (t.front()) {
        case '+': d.qualifier = SpfQualifier::pass; t.remove_prefix(1); break;
        case '-': d.qualifier = SpfQualifier::fail; t.remove_prefix(1); break;
        case '~': d.qualifier = SpfQualifier::softfail; t.remove_prefix(1); break;
        case '?': d.qualifier = SpfQualifier::neutral; t.remove_prefix(1); break;
        default: break;
    }
    std::size_t end = t.find_first_of(":/");
    std::string_view name = t.substr(0, end);
    std::string_view rest = end == std::string_view::npos ? std::string_view() : t.substr(end);
    const std::string bad = "bad mechanism " + std::string(term.substr(0, 64));
    if (iequals(name, "all")) {
        d.mechanism = SpfMechanism::all;
        return rest.empty() || fail(err, bad);
    }
    if (iequals(name, "ip4") || iequals(name, "ip6")) {
        const bool v6 = iequals(name, "ip6");
        d.mechanism = v6 ? SpfMechanism::ip6 : SpfMechanism::ip4;
        if (rest.empty() || rest[0] != ':') return fail(err, bad);
        rest.remove_prefix(1);
        std::string_view addr = rest;
        int* cidr = v6 ? &d.cidr6 : &d.cidr4;
        if (std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
            addr = rest.substr(0, slash);
            if (!parse_cidr(rest.substr(slash + 1), v6 ? 128 : 32, *cidr)) return fail(err, bad);
        }
        if (!parse_ip(addr, d.network, !v6) || d.network.v6 != v6) return fail(err, bad);
        return true;
    }
    struct Named {
        const char* name;
        SpfMechanism m;
        bool needs_domain, cidr;
    };
    static constexpr Named kNamed[] = {{"a", SpfMechanism::a, false, true},
                                       {"mx", SpfMechanism::mx, false, true},
                                       {"ptr", SpfMechanism::ptr, false, false},
                                       {"include", SpfMechanism::include, true, false},
                                       {"exists", SpfMechanism::exists, true, false}};
    for (const Named& n : kNamed) {
        if (!iequals(name, n.name)) continue;
        d.mechanism = n.m;
        if (n.cidr && !split_dual_cidr(rest, d)) return fail(err, bad);
        if (rest.empty()) return !n.needs_domain || fail(err, bad);
        if (rest[0] != ':' || !valid_domain_spec(rest.substr(1))) return fail(err, bad);
        d.domain_spec = std::string(rest.substr(1));
        return true;
    }
    return fail(err, "unknown mechanism " + std::string(term.substr(0, 64)));
}

// name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ), then '='. Returns the name length or 0.
std::size_t modifier_name(std::string_view term) {
    if (term.empty() || !is_alpha(term[0])) return 0;
    std::size_t i = 1;
    while (i < term.size() && (is_alnum(term[i]) || term[i] == '-' || term[i] == '_' || term[i] == '.')) i++;
    return i < term.size() && term[i] == '=' ? i : 0;
}

}  // namespace

bool parse_ip(std::string_view text, IpAddress& out, bool map_v4) {
    out = IpAddress{};
    if (text.empty() || text.size() > 45) return false;
    if (text.find(':') == std::string_view::npos) {
        std::size_t part = 0, digits = 0;
        unsigned value = 0;
        for (std::size_t i = 0; i <= text.size(); i++) {
            if (i == text.size() || text[i] == '.') {
                if (digits == 0 || part > 3) return false;
                out.bytes[part++] = static_cast<uint8_t>(value);
                digits = value = 0;
                continue;
            }
            if (!is_digit(text[i]) || (digits == 1 && value == 0) || ++digits > 3) return false;
            value = value * 10 + static_cast<unsigned>(text[i] - '0');
            if (value > 255) return false;
        }
        return part == 4;
    }
    char buf[46];
    text.copy(buf, text.size());
    buf[text.size()] = '\0';
    if (inet_pton(AF_INET6, buf, out.bytes.data()) != 1) return false;
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (map_v4 && std::equal(std::begin(kMapped), std::end(kMapped), out.bytes.begin())) {
        std::copy(out.bytes.begin() + 12, out.bytes.end(), out.bytes.begin());
        std::fill(out.bytes.begin() + 4, out.bytes.end(), 0);
        return true;
    }
    out.v6 = true;
    return true;
}

std::string ip_to_text(const IpAddress& ip) {
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(ip.v6 ? AF_INET6 : AF_INET, ip.bytes.data(), buf, sizeof buf);
    return buf;
}

bool ip_in_network(const IpAddress& ip, const IpAddress& net, int prefix) {
    if (ip.v6 != net.v6 || prefix < 0 || prefix > (ip.v6 ? 128 : 32)) return false;
    int full = prefix / 8, rest = prefix % 8;
    for (int i = 0; i < full; i++)
        if (ip.bytes[static_cast<std::size_t>(i)] != net.bytes[static_cast<std::size_t>(i)]) return false;
    if (rest == 0) return true;
    auto mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (ip.bytes[static_cast<std::size_t>(full)] & mask) == (net.bytes[static_cast<std::size_t>(full)] & mask);
}

std::string reverse_name(const IpAddress& ip) {
    std::string out;
    if (!ip.v6) {
        for (int i = 3; i >= 0; i--) out += std::to_string(ip.bytes[static_cast<std::size_t>(i)]) + ".";
        return out + "in-addr.arpa";
    }
    static constexpr char kHex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        uint8_t b = ip.bytes[static_cast<std::size_t>(i)];
        out += {kHex[b & 15], '.', kHex[b >> 4], '.'};
    }
    return out + "ip6.arpa";
}

bool is_spf_record(std::string_view txt) {
    return txt.size() >= 6 && iequals(txt.substr(0, 6), "v=spf1") && (txt.size() == 6 || txt[6] == ' ');
}

bool parse_spf_record(std::string_view txt, SpfRecord& out, std::string& err) {
    out = SpfRecord{};
    if (txt.size() > kMaxSpfRecordBytes) return fail(err, "SPF record too long");
    if (!is_spf_record(txt)) return fail(err, "not an SPF record");
    for (char c : txt) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u > 0x7e) return fail(err, "non-printable or non-ASCII byte in SPF record");
    }
    std::string_view rest = txt.substr(6);
    while (!rest.empty()) {
        std::size_t sp = rest.find(' ');
        std::string_view term = rest.substr(0, sp);
        rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
        if (term.empty()) continue;  // 1*SP between terms
        if (std::size_t n = modifier_name(term)) {
            std::string_view name = term.substr(0, n), value = term.substr(n + 1);
            const bool redirect = iequals(name, "redirect"), exp = iequals(name, "exp");
            if (redirect || exp) {
                std::optional<std::string>& slot = redirect ? out.redirect : out.exp;
                if (slot) return fail(err, std::string(name) + "= appears twice");
                if (!valid_domain_spec(value)) return fail(err, "bad " + std::string(name) + "= domain");
                slot = std::string(value);
            } else if (!valid_macro_string(value, MacroKind::domain)) {
                return fail(err, "bad modifier " + std::string(term.substr(0, 64)));
            }
            continue;
        }
        SpfDirective d;
        if (!parse_directive(term, d, err)) return false;
        out.directives.push_back(std::move(d));
    }
    return true;
}

}  // namespace mta::msgauth
