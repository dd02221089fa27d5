// SMTP command framing, verb recognition and ESMTP parameter parsing over untrusted bytes.
// Pure: no I/O, no globals; unit-tested and fuzzed (tests/fuzz/fuzz_smtpd_command.cpp).
#include "smtpd/smtpd_command.h"

#include <algorithm>

#include "common/address.h"
#include "common/protocol.h"

namespace mta::smtpd {
namespace {

char upper(char c) { return (c >= 'a' && c <= 'z') ? char(c - 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); i++)
        if (upper(a[i]) != upper(b[i])) return false;
    return true;
}

bool istarts(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool is_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

Reply err(int code, const char* enh, std::string text) { return Reply{code, enh, std::move(text)}; }
Reply syntax(std::string text) { return err(501, "5.5.4", std::move(text)); }

// Parses a decimal number of at most 20 digits; saturates at UINT64_MAX instead of wrapping.
std::optional<uint64_t> parse_number(std::string_view s) {
    if (s.empty() || s.size() > 20) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        uint64_t d = uint64_t(c - '0');
        if (v > (UINT64_MAX - d) / 10) return UINT64_MAX;
        v = v * 10 + d;
    }
    return v;
}

struct Param {
    std::string_view key, value;
    bool has_value = false;
};

// Splits "K1=V1 K2 K3=V3" into params, validating esmtp-keyword / esmtp-value syntax.
// Calls fn(param) for each; stops at the first error reply.
template <typename Fn>
Reply for_each_param(std::string_view s, Fn fn) {
    std::size_t i = 0;
    while (i < s.size()) {
        if (s[i] == ' ') { i++; continue; }
        std::size_t end = s.find(' ', i);
        if (end == std::string_view::npos) end = s.size();
        std::string_view tok = s.substr(i, end - i);
        i = end;
        Param p;
        std::size_t eq = tok.find('=');
        p.key = tok.substr(0, eq);
        if (p.key.empty() || p.key.size() > 64 || !is_alnum(p.key[0])) return syntax("Syntax error in parameters");
        for (char c : p.key)
            if (!is_alnum(c) && c != '-') return syntax("Syntax error in parameters");
        if (eq != std::string_view::npos) {
            p.has_value = true;
            p.value = tok.substr(eq + 1);
            if (p.value.empty()) return syntax("Syntax error in parameters");
            for (char ch : p.value) {
                unsigned char c = static_cast<unsigned char>(ch);
                if (c < 33 || c == '=' || c == 127) return syntax("Syntax error in parameters");
            }
        }
        if (Reply r = fn(p)) return r;
    }
    return {};
}

Reply unknown_param(const Param& p) {
    (void)p;
    return err(555, "5.5.4", "Unsupported parameter");
}

}  // namespace

Frame next_command(std::string_view buf, std::size_t limit, bool& discarding) {
    Frame f;
    const std::size_t window = std::min(buf.size(), limit + 2);  // a full line plus CRLF
    const std::size_t lf = buf.substr(0, window).find('\n');
    if (discarding) {
        if (lf == std::string_view::npos) {
            f.consumed = window;
            return f;
        }
        discarding = false;
        Frame next = next_command(buf.substr(lf + 1), limit, discarding);
        next.consumed += lf + 1;
        return next;
    }
    if (lf == std::string_view::npos) {
        if (buf.size() >= limit + 2) {
            f.kind = FrameKind::too_long;
            f.consumed = window;
            discarding = true;
        }
        return f;
    }
    f.consumed = lf + 1;
    if (lf == 0 || buf[lf - 1] != '\r') {
        f.kind = FrameKind::bare_lf;
    } else if (lf - 1 > limit) {
        f.kind = FrameKind::too_long;
    } else {
        f.kind = FrameKind::line;
        f.line = buf.substr(0, lf - 1);
    }
    return f;
}

Command parse_command(std::string_view line) {
    Command c;
    c.line = line;
    for (char ch : line) {
        unsigned char b = static_cast<unsigned char>(ch);
        if ((b < 0x20 && b != '\t') || b == 0x7f) c.bad_chars = true;
    }
    std::size_t sp = line.find(' ');
    std::string_view word = line.substr(0, sp);
    std::string_view arg = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    static constexpr struct { const char* name; Verb verb; } kVerbs[] = {
        {"HELO", Verb::helo}, {"EHLO", Verb::ehlo}, {"MAIL", Verb::mail}, {"RCPT", Verb::rcpt},
        {"DATA", Verb::data}, {"BDAT", Verb::bdat}, {"RSET", Verb::rset}, {"NOOP", Verb::noop},
        {"QUIT", Verb::quit}, {"VRFY", Verb::vrfy}, {"EXPN", Verb::expn}, {"HELP", Verb::help},
        {"STARTTLS", Verb::starttls}, {"AUTH", Verb::auth},
        {"TURN", Verb::not_implemented}, {"ETRN", Verb::not_implemented}, {"ATRN", Verb::not_implemented},
        {"SEND", Verb::not_implemented}, {"SOML", Verb::not_implemented}, {"SAML", Verb::not_implemented},
    };
    for (auto& v : kVerbs)
        if (iequals(word, v.name)) c.verb = v.verb;
    if (c.verb == Verb::mail || c.verb == Verb::rcpt) {
        std::string_view prefix = c.verb == Verb::mail ? "FROM:" : "TO:";
        while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);  // "MAIL  FROM:": Postfix takes it too
        if (!istarts(arg, prefix)) c.bad_syntax = true;
        else arg.remove_prefix(prefix.size());
    }
    c.arg = arg;
    return c;
}

Reply parse_mail_params(std::string_view params, uint64_t size_limit, MailParams& out) {
    bool seen_size = false, seen_body = false, seen_utf8 = false, seen_ret = false, seen_envid = false,
         seen_auth = false, seen_requiretls = false;
    auto once = [](bool& seen) { bool dup = seen; seen = true; return dup; };
    return for_each_param(params, [&](const Param& p) -> Reply {
        if (iequals(p.key, "SIZE")) {
            if (once(seen_size)) return syntax("Duplicate SIZE parameter");
            auto n = parse_number(p.value);
            if (!p.has_value || !n) return syntax("Bad SIZE parameter");
            if (*n > size_limit) return err(552, "5.3.4", "Message size exceeds fixed maximum message size");
            out.size = *n;
        } else if (iequals(p.key, "BODY")) {
            if (once(seen_body)) return syntax("Duplicate BODY parameter");
            if (iequals(p.value, "7BIT")) out.body = BodyType::seven_bit;
            else if (iequals(p.value, "8BITMIME")) out.body = BodyType::eight_bit;
            else return syntax("Unsupported BODY type");
        } else if (iequals(p.key, "SMTPUTF8")) {
            if (once(seen_utf8) || p.has_value) return syntax("Bad SMTPUTF8 parameter");
            out.smtputf8 = true;
        } else if (iequals(p.key, "REQUIRETLS")) {
            if (once(seen_requiretls) || p.has_value) return syntax("Bad REQUIRETLS parameter");
            out.requiretls = true;
        } else if (iequals(p.key, "RET")) {
            if (once(seen_ret)) return syntax("Duplicate RET parameter");
            if (iequals(p.value, "FULL")) out.ret = Ret::full;
            else if (iequals(p.value, "HDRS")) out.ret = Ret::hdrs;
            else return syntax("Bad RET parameter");
        } else if (iequals(p.key, "ENVID")) {
            if (once(seen_envid) || !p.has_value) return syntax("Bad ENVID parameter");
            auto v = addr::xtext_decode(p.value);
            // Decoded: printable ASCII without spaces (the queue stores it as one token), <= 100.
            if (!v || v->empty() || v->size() > 100 || v->find(' ') != std::string::npos)
                return syntax("Bad ENVID parameter");
            out.envid = std::move(*v);
        } else if (iequals(p.key, "AUTH")) {
            // RFC 4954 §5: accepted, but as we do not trust other servers' AUTH= it is recorded as <>.
            if (once(seen_auth) || !p.has_value) return syntax("Bad AUTH parameter");
            auto v = addr::xtext_decode(p.value);  // refuses CR, LF, NUL and other controls
            if (!v || v->empty() || v->size() > 500) return syntax("Bad AUTH parameter");
            out.auth = std::move(*v);
        } else {
            return unknown_param(p);
        }
        return {};
    });
}

Reply parse_rcpt_params(std::string_view params, RcptParams& out) {
    bool seen_notify = false, seen_orcpt = false;
    return for_each_param(params, [&](const Param& p) -> Reply {
        if (iequals(p.key, "NOTIFY")) {
            if (seen_notify || !p.has_value) return syntax("Bad NOTIFY parameter");
            seen_notify = true;
            std::string_view v = p.value;
            while (true) {
                std::size_t comma = v.find(',');
                std::string_view item = v.substr(0, comma);
                if (iequals(item, "NEVER")) out.notify |= ipc::kNotifyNever;
                else if (iequals(item, "SUCCESS")) out.notify |= ipc::kNotifySuccess;
                else if (iequals(item, "FAILURE")) out.notify |= ipc::kNotifyFailure;
                else if (iequals(item, "DELAY")) out.notify |= ipc::kNotifyDelay;
                else return syntax("Bad NOTIFY parameter");
                if (comma == std::string_view::npos) break;
                v.remove_prefix(comma + 1);
            }
            if ((out.notify & ipc::kNotifyNever) && out.notify != ipc::kNotifyNever)
                return syntax("NOTIFY=NEVER cannot be combined");
        } else if (iequals(p.key, "ORCPT")) {
            if (seen_orcpt || !p.has_value) return syntax("Bad ORCPT parameter");
            seen_orcpt = true;
            std::size_t semi = p.value.find(';');
            if (semi == 0 || semi == std::string_view::npos || semi > 32) return syntax("Bad ORCPT parameter");
            std::string_view type = p.value.substr(0, semi);
            for (char c : type)
                if (!is_alnum(c) && c != '-') return syntax("Bad ORCPT parameter");
            auto v = addr::xtext_decode(p.value.substr(semi + 1));
            if (!v || v->empty() || v->size() > 500) return syntax("Bad ORCPT parameter");
            out.orcpt = std::string(type) + ";" + *v;
        } else {
            return unknown_param(p);
        }
        return {};
    });
}

std::optional<BdatArgs> parse_bdat(std::string_view arg) {
    std::size_t sp = arg.find(' ');
    auto n = parse_number(arg.substr(0, sp));
    if (!n || *n == UINT64_MAX) return std::nullopt;
    BdatArgs b{*n, false};
    if (sp != std::string_view::npos) {
        if (!iequals(arg.substr(sp + 1), "LAST")) return std::nullopt;
        b.last = true;
    }
    return b;
}

}  // namespace mta::smtpd
