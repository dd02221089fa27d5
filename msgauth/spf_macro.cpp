// SPF macro syntax and expansion (see spf_macro.h).
#include "msgauth/spf_macro.h"

#include <algorithm>
#include <vector>

#include "common/address.h"
#include "msgauth/dkim_tags.h"

namespace mta::msgauth {

namespace {

constexpr std::string_view kDelimiters = ".-+,/_=";

struct Macro {
    char letter = 0;     // lower-case
    bool escape = false; // written upper-case
    unsigned digits = 0; // 0 = all parts
    bool reverse = false;
    std::string_view delimiters;
};

// Parses the inside of "%{...}" starting at s[pos] (just after '{'); pos ends after '}'.
bool parse_macro(std::string_view s, std::size_t& pos, MacroKind kind, Macro& m) {
    if (pos >= s.size()) return false;
    char c = s[pos++];
    m.escape = c >= 'A' && c <= 'Z';
    m.letter = m.escape ? static_cast<char>(c + 32) : c;
    if (std::string_view("slodiphcrtv").find(m.letter) == std::string_view::npos) return false;
    if (kind == MacroKind::domain && std::string_view("crt").find(m.letter) != std::string_view::npos) return false;
    std::size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
        if (pos - start == 3) return false;
        m.digits = m.digits * 10 + static_cast<unsigned>(s[pos++] - '0');
    }
    if (pos > start && m.digits == 0) return false;  // "the value MUST be nonzero"
    if (pos < s.size() && (s[pos] == 'r' || s[pos] == 'R')) {
        m.reverse = true;
        pos++;
    }
    start = pos;
    while (pos < s.size() && kDelimiters.find(s[pos]) != std::string_view::npos) pos++;
    m.delimiters = s.substr(start, pos - start);
    if (pos >= s.size() || s[pos] != '}') return false;
    pos++;
    return true;
}

std::string value_of(const Macro& m, const SpfMacroContext& ctx) {
    switch (m.letter) {
        case 's': return std::string(ctx.sender);
        case 'l': return std::string(ctx.local_part);
        case 'o': return std::string(ctx.sender_domain);
        case 'd': return std::string(ctx.domain);
        case 'h': return std::string(ctx.helo);
        case 'r': return ctx.receiver.empty() ? "unknown" : std::string(ctx.receiver);
        case 't': return std::to_string(ctx.now);
        case 'v': return ctx.ip.v6 ? "ip6" : "in-addr";
        case 'c': return ip_to_text(ctx.ip);
        case 'p': return ctx.validated_name ? *ctx.validated_name : "unknown";
        case 'i': {
            if (!ctx.ip.v6) return ip_to_text(ctx.ip);
            static constexpr char kHex[] = "0123456789abcdef";
            std::string out;
            for (uint8_t b : ctx.ip.bytes) {
                if (!out.empty()) out.push_back('.');
                out.push_back(kHex[b >> 4]);
                out.push_back('.');
                out.push_back(kHex[b & 15]);
            }
            return out;
        }
    }
    return {};
}

// Split on the delimiters, reverse, keep the right-most parts, join with '.' (§7.3).
std::string transform(const Macro& m, const std::string& value) {
    if (m.digits == 0 && !m.reverse && m.delimiters.empty()) return value;
    std::string_view delims = m.delimiters.empty() ? std::string_view(".") : m.delimiters;
    std::vector<std::string_view> parts;
    std::string_view v(value);
    for (;;) {
        std::size_t d = v.find_first_of(delims);
        parts.push_back(v.substr(0, d));
        if (d == std::string_view::npos) break;
        v.remove_prefix(d + 1);
    }
    if (m.reverse) std::reverse(parts.begin(), parts.end());
    std::size_t keep = m.digits == 0 ? parts.size() : std::min<std::size_t>(m.digits, parts.size());
    std::string out;
    for (std::size_t i = parts.size() - keep; i < parts.size(); i++) {
        if (i > parts.size() - keep) out.push_back('.');
        out.append(parts[i]);
    }
    return out;
}

void url_escape(std::string_view in, std::string& out) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char c : in) {
        bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                          c == '-' || c == '.' || c == '_' || c == '~';
        if (unreserved) {
            out.push_back(c);
        } else {
            auto u = static_cast<unsigned char>(c);
            out.push_back('%');
            out.push_back(kHex[u >> 4]);
            out.push_back(kHex[u & 15]);
        }
    }
}

// Walks a macro-string; with ctx == nullptr it only checks the syntax.
MacroStatus walk(std::string_view s, const SpfMacroContext* ctx, MacroKind kind, std::string& out) {
    out.clear();
    for (std::size_t pos = 0; pos < s.size();) {
        char c = s[pos];
        if (c != '%') {
            auto u = static_cast<unsigned char>(c);
            bool literal = (u >= 0x21 && u <= 0x7e) || (kind == MacroKind::exp && c == ' ');
            if (!literal) return MacroStatus::syntax_error;
            out.push_back(c);
            pos++;
        } else if (pos + 1 < s.size() && s[pos + 1] == '%') {
            out.push_back('%');
            pos += 2;
        } else if (pos + 1 < s.size() && s[pos + 1] == '_') {
            out.push_back(' ');
            pos += 2;
        } else if (pos + 1 < s.size() && s[pos + 1] == '-') {
            out.append("%20");
            pos += 2;
        } else if (pos + 1 < s.size() && s[pos + 1] == '{') {
            pos += 2;
            Macro m;
            if (!parse_macro(s, pos, kind, m)) return MacroStatus::syntax_error;
            if (!ctx) continue;
            if (m.letter == 'p' && !ctx->validated_name) return MacroStatus::needs_ptr;
            std::string v = transform(m, value_of(m, *ctx));
            if (m.escape) url_escape(v, out);
            else out.append(v);
        } else {
            return MacroStatus::syntax_error;
        }
        if (out.size() > kMaxMacroExpansion) return MacroStatus::syntax_error;
    }
    return MacroStatus::ok;
}

}  // namespace

bool valid_macro_string(std::string_view s, MacroKind kind) {
    std::string scratch;
    return walk(s, nullptr, kind, scratch) == MacroStatus::ok;
}

MacroStatus expand_macros(std::string_view s, const SpfMacroContext& ctx, MacroKind kind, std::string& out) {
    // The whole string is checked first, so a %{p} lookup is never made for a string that cannot expand.
    if (!valid_macro_string(s, kind)) return MacroStatus::syntax_error;
    return walk(s, &ctx, kind, out);
}

std::string spf_query_name(std::string_view expanded) {
    if (!expanded.empty() && expanded.back() == '.') expanded.remove_suffix(1);
    while (expanded.size() > kMaxDomainText) {
        std::size_t dot = expanded.find('.');
        if (dot == std::string_view::npos) return {};
        expanded.remove_prefix(dot + 1);
    }
    std::string name = addr::lower(expanded);
    // Hyphens at label edges are tolerated: SPF names are queried as written, not validated as hosts.
    for (std::size_t i = 0, label = 0; i <= name.size(); i++) {
        if (i == name.size() || name[i] == '.') {
            if (label == 0 || label > 63) return {};
            label = 0;
            continue;
        }
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return {};
        label++;
    }
    return name;
}

}  // namespace mta::msgauth
