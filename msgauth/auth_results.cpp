// Authentication-Results and Received-SPF writing, forged Authentication-Results recognition
// (see auth_results.h).
#include "msgauth/auth_results.h"

#include "msgauth/dkim_tags.h"
#include "msgauth/header_fold.h"

namespace mta::msgauth {

namespace {

constexpr std::size_t kMaxValue = 512;  // longer values from the network are cut, keeping lines under 998

bool is_ctl(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

// RFC 2045 token: printable ASCII minus tspecials.
bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || std::string_view("()<>@,;:\\\"/[]?=").find(c) != std::string_view::npos)
            return false;
    }
    return true;
}

bool is_atext(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

bool is_dot_atom(std::string_view s) {
    if (s.empty() || s.front() == '.' || s.back() == '.' || s.find("..") != std::string_view::npos) return false;
    for (char c : s)
        if (c != '.' && !is_atext(c)) return false;
    return true;
}

// Bytes to put between quotes or parentheses: control bytes become spaces, at most kMaxValue.
std::string escaped(std::string_view s, std::string_view specials) {
    std::string out;
    for (char c : s.substr(0, kMaxValue)) {
        if (is_ctl(c)) c = ' ';
        if (specials.find(c) != std::string_view::npos) out.push_back('\\');
        out.push_back(c);
    }
    return out;
}

std::string quoted(std::string_view s) { return "\"" + escaped(s, "\"\\") + "\""; }

// A comment word by word, so that it folds between words like any CFWS; `after` follows the ')'.
void add_comment(HeaderFolder& f, std::string_view text, std::string_view after = "") {
    std::vector<std::string> words;
    std::string_view rest = text.substr(0, kMaxValue);
    while (!rest.empty()) {
        std::size_t sp = rest.find_first_of(" \t\r\n");
        std::string_view w = rest.substr(0, sp);
        if (!w.empty()) words.push_back(escaped(w, "()\\"));
        rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
    }
    if (words.empty()) words.emplace_back();
    words.front().insert(0, "(");
    words.back().append(")").append(after);
    for (const std::string& w : words) f.add(w);
}

// RFC 8601 pvalue: a token, or [local-part] "@" domain as is; anything else as a quoted-string.
std::string pvalue(std::string_view v) {
    if (v.size() <= kMaxValue && is_token(v)) return std::string(v);
    std::size_t at = v.rfind('@');
    if (v.size() <= kMaxValue && at != std::string_view::npos && (at == 0 || is_dot_atom(v.substr(0, at))) &&
        is_dot_atom(v.substr(at + 1)))
        return std::string(v);
    return quoted(v);
}

// RFC 7208 §9.1 key-value-pair values: dot-atom or quoted-string.
std::string kv_value(std::string_view v) {
    return v.size() <= kMaxValue && is_dot_atom(v) ? std::string(v) : quoted(v);
}

}  // namespace

std::string authentication_results(std::string_view authserv_id, const std::vector<AuthMethodResult>& methods) {
    HeaderFolder f("Authentication-Results:");
    const std::string id = is_token(authserv_id) ? std::string(authserv_id) : quoted(authserv_id);
    if (methods.empty()) {
        f.add(id + "; none");
    } else {
        f.add(id + ";");
        for (std::size_t i = 0; i < methods.size(); i++) {
            const AuthMethodResult& m = methods[i];
            const std::string end = i + 1 < methods.size() ? ";" : "";
            f.newline();
            std::vector<std::string> tokens;
            if (!m.reason.empty()) tokens.push_back("reason=" + quoted(m.reason));
            for (const auto& [name, value] : m.properties) tokens.push_back(name + "=" + pvalue(value));
            f.add(m.method + "=" + result_name(m.result) + (tokens.empty() && m.comment.empty() ? end : ""), false);
            if (!m.comment.empty()) add_comment(f, m.comment, tokens.empty() ? end : "");
            for (std::size_t t = 0; t < tokens.size(); t++) f.add(tokens[t] + (t + 1 == tokens.size() ? end : ""));
        }
    }
    return f.text() + "\r\n";
}

AuthMethodResult dkim_method(const DkimVerdict& v) {
    AuthMethodResult m{"dkim", v.result, v.reason, "", {}};
    if (v.body_length_limited && v.testing) m.comment = "l= leaves part of the body unsigned; key in testing mode";
    else if (v.body_length_limited) m.comment = "l= leaves part of the body unsigned";
    else if (v.testing) m.comment = "key in testing mode";
    if (!v.domain.empty()) m.properties.emplace_back("header.d", v.domain);
    if (!v.identity.empty()) m.properties.emplace_back("header.i", v.identity);
    if (!v.selector.empty()) m.properties.emplace_back("header.s", v.selector);
    if (!v.algorithm.empty()) m.properties.emplace_back("header.a", v.algorithm);
    if (!v.b_prefix.empty()) m.properties.emplace_back("header.b", v.b_prefix);
    return m;
}

AuthMethodResult spf_method(AuthResult r, SpfIdentity identity, std::string_view checked) {
    AuthMethodResult m{"spf", r, "", "", {}};
    m.properties.emplace_back(identity == SpfIdentity::helo ? "smtp.helo" : "smtp.mailfrom", std::string(checked));
    return m;
}

AuthMethodResult dmarc_method(const DmarcVerdict& v, std::string_view from_domain) {
    AuthMethodResult m{"dmarc", v.result, "", "", {}};
    if (v.result == AuthResult::pass || v.result == AuthResult::fail) {
        static constexpr const char* kDisposition[] = {"none", "quarantine", "reject"};
        m.comment = std::string("p=") + policy_name(v.policy) +
                    " dis=" + kDisposition[static_cast<int>(v.disposition)] + (v.sampled_out ? " pct" : "");
    } else {
        m.reason = v.reason;
    }
    if (!from_domain.empty()) m.properties.emplace_back("header.from", std::string(from_domain));
    return m;
}

std::string received_spf(const ReceivedSpf& r) {
    const std::string ip = ip_to_text(r.client_ip);
    const std::string who = "domain of " + r.sender;
    std::string text;
    switch (r.result) {
        case AuthResult::pass: text = who + " designates " + ip + " as permitted sender"; break;
        case AuthResult::fail: text = who + " does not designate " + ip + " as permitted sender"; break;
        case AuthResult::softfail:
            text = "domain of transitioning " + r.sender + " does not designate " + ip + " as permitted sender";
            break;
        case AuthResult::neutral: text = ip + " is neither permitted nor denied by " + who; break;
        case AuthResult::temperror: text = "temporary error in processing during lookup of " + who; break;
        case AuthResult::permerror: text = "permanent error in processing " + who; break;
        default: text = who + " does not designate permitted sender hosts"; break;
    }
    HeaderFolder f(std::string("Received-SPF: ") + result_name(r.result));
    add_comment(f, r.receiver + ": " + text);
    std::vector<std::pair<const char*, std::string>> kv = {
        {"receiver", r.receiver}, {"client-ip", ip}, {"envelope-from", r.envelope_from}, {"helo", r.helo},
        {"identity", r.identity == SpfIdentity::helo ? "helo" : "mailfrom"}};
    if (!r.mechanism.empty()) kv.emplace_back("mechanism", r.mechanism);
    if (!r.problem.empty()) kv.emplace_back("problem", r.problem);
    for (std::size_t i = 0; i < kv.size(); i++)
        f.add(std::string(kv[i].first) + "=" + kv_value(kv[i].second) + (i + 1 < kv.size() ? ";" : ""));
    return f.text() + "\r\n";
}

bool claims_authserv_id(std::string_view value, std::string_view authserv_id) {
    std::size_t pos = 0;
    // [CFWS]: whitespace, folding and (nested) comments with quoted-pairs.
    for (int depth = 0; pos < value.size(); pos++) {
        char c = value[pos];
        if (depth > 0 && c == '\\') pos++;
        else if (c == '(') depth++;
        else if (c == ')' && depth > 0) depth--;
        else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n') break;
    }
    if (pos >= value.size()) return false;
    std::string id;
    if (value[pos] == '"') {
        for (pos++; pos < value.size() && value[pos] != '"'; pos++) {
            if (value[pos] == '\\' && pos + 1 < value.size()) pos++;
            id.push_back(value[pos]);
        }
        if (pos >= value.size()) return false;  // unterminated: not a claim we can read
    } else {
        for (; pos < value.size(); pos++) {
            char c = value[pos];
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' || c == '(') break;
            id.push_back(c);
        }
    }
    auto strip_dot = [](std::string_view s) { return !s.empty() && s.back() == '.' ? s.substr(0, s.size() - 1) : s; };
    return !id.empty() && iequals(strip_dot(id), strip_dot(authserv_id));
}

std::vector<std::size_t> forged_auth_results(const std::vector<HeaderField>& fields, std::string_view authserv_id) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < fields.size(); i++)
        if (iequals(fields[i].name, "Authentication-Results") && claims_authserv_id(fields[i].value(), authserv_id))
            out.push_back(i);
    return out;
}

}  // namespace mta::msgauth
