// MTA-STS parsers and matching (RFC 8461 §3.1, §3.2, §4.1) and the IPC form of a policy lookup.
// Every input here is remote data (DNS TXT, an HTTPS body) or a peer's message: parsed strictly.
#include "common/mta_sts.h"

#include <charconv>

#include "common/address.h"

namespace mta::sts {
namespace {

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool is_wsp(char c) { return c == ' ' || c == '\t'; }
using addr::lower;

// A host name as an MX pattern may name it: LDH (and '_') labels of 1..63 bytes, at most 253 bytes.
bool valid_hostname(std::string_view d) {
    if (d.empty() || d.size() > 253) return false;
    std::size_t label = 0;
    for (std::size_t i = 0; i < d.size(); i++) {
        char c = d[i];
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-') return false;
            label = 0;
            continue;
        }
        if (!is_alnum(c) && c != '-' && c != '_') return false;
        if (label == 0 && c == '-') return false;
        if (++label > 63) return false;
    }
    return label > 0 && d.back() != '-';
}

bool parse_decimal(std::string_view s, std::size_t max_digits, uint64_t& out) {
    if (s.empty() || s.size() > max_digits) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::string_view trim_wsp(std::string_view s) {
    while (!s.empty() && is_wsp(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_wsp(s.back())) s.remove_suffix(1);
    return s;
}

const char* mode_name(Mode m) {
    switch (m) {
    case Mode::none: return "none";
    case Mode::testing: return "testing";
    case Mode::enforce: return "enforce";
    }
    return "?";
}

std::optional<std::string> parse_txt(std::string_view rec) {
    // sts-text-record = "v=STSv1" 1*(sts-field-delim sts-field) [sts-field-delim]; delim = *WSP ";" *WSP
    if (rec.substr(0, 7) != "v=STSv1") return std::nullopt;
    rec.remove_prefix(7);
    std::optional<std::string> id;
    bool any_field = false;
    while (!rec.empty()) {
        std::size_t i = 0;
        while (i < rec.size() && is_wsp(rec[i])) i++;
        if (i == rec.size() || rec[i] != ';') return std::nullopt;
        i++;
        while (i < rec.size() && is_wsp(rec[i])) i++;
        rec.remove_prefix(i);
        if (rec.empty()) break;  // trailing delimiter
        std::size_t end = 0;
        while (end < rec.size() && rec[end] != ';' && !is_wsp(rec[end])) end++;
        std::string_view field = rec.substr(0, end);
        rec.remove_prefix(end);
        auto eq = field.find('=');
        if (eq == std::string_view::npos || eq == 0 || eq + 1 == field.size()) return std::nullopt;
        std::string_view name = field.substr(0, eq), value = field.substr(eq + 1);
        if (name.size() > 32 || !is_alnum(name[0])) return std::nullopt;
        for (char c : name)
            if (!is_alnum(c) && c != '_' && c != '-' && c != '.') return std::nullopt;
        for (char c : value)
            if (c < 0x21 || c > 0x7e || c == '=' || c == ';') return std::nullopt;
        if (name == "id") {
            if (id || value.size() > kMaxIdLength) return std::nullopt;
            for (char c : value)
                if (!is_alnum(c)) return std::nullopt;
            id = std::string(value);
        }
        any_field = true;
    }
    if (!any_field || !id) return std::nullopt;
    return id;
}

std::optional<std::string> select_txt(const std::vector<std::string>& records, std::string& why) {
    std::optional<std::string> found;
    int sts = 0;
    for (auto& r : records) {
        if (r.compare(0, 7, "v=STSv1") != 0) continue;
        sts++;
        found = parse_txt(r);
    }
    if (sts == 0) {
        why = "no v=STSv1 TXT record";
        return std::nullopt;
    }
    if (sts > 1) {
        why = "more than one v=STSv1 TXT record";
        return std::nullopt;
    }
    if (!found) why = "malformed v=STSv1 TXT record";
    return found;
}

bool parse_policy(std::string_view body, Policy& out, std::string& err) {
    if (body.size() > kMaxPolicyBytes) {
        err = "policy larger than 64 KiB";
        return false;
    }
    Policy p;
    bool have_version = false, have_mode = false, have_age = false;
    int line_no = 0;
    while (!body.empty()) {
        auto nl = body.find('\n');
        std::string_view line = body.substr(0, nl);
        body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
        line_no++;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (trim_wsp(line).empty()) continue;
        std::string where = "line " + std::to_string(line_no) + ": ";
        for (char c : line)
            if ((c < 0x20 || c > 0x7e) && c != '\t') {
                err = where + "control or non-ASCII byte";
                return false;
            }
        auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0 || colon > 32) {
            err = where + "not a \"key: value\" line";
            return false;
        }
        std::string_view key = line.substr(0, colon), value = trim_wsp(line.substr(colon + 1));
        for (char c : key)
            if (!is_alnum(c) && c != '_' && c != '-' && c != '.') {
                err = where + "bad key";
                return false;
            }
        if (key == "version") {
            if (have_version || value != "STSv1") {
                err = where + (have_version ? "duplicate version" : "version is not STSv1");
                return false;
            }
            have_version = true;
        } else if (key == "mode") {
            if (have_mode) { err = where + "duplicate mode"; return false; }
            if (value == "enforce") p.mode = Mode::enforce;
            else if (value == "testing") p.mode = Mode::testing;
            else if (value == "none") p.mode = Mode::none;
            else { err = where + "unknown mode"; return false; }
            have_mode = true;
        } else if (key == "max_age") {
            uint64_t n = 0;
            if (have_age || !parse_decimal(value, 10, n)) {
                err = where + (have_age ? "duplicate max_age" : "max_age is not 1-10 digits");
                return false;
            }
            p.max_age = n > kMaxAgeCap ? kMaxAgeCap : n;
            have_age = true;
        } else if (key == "mx") {
            std::string v = lower(value);
            std::string_view host = v;
            if (host.substr(0, 2) == "*.") host.remove_prefix(2);
            if (!valid_hostname(host)) { err = where + "bad mx pattern"; return false; }
            if (p.mx.size() >= kMaxMxPatterns) { err = where + "too many mx patterns"; return false; }
            p.mx.push_back(std::move(v));
        }
        // Other keys are extensions (RFC 8461 §3.2): ignored.
    }
    if (!have_version || !have_mode || !have_age) {
        err = !have_version ? "no version" : !have_mode ? "no mode" : "no max_age";
        return false;
    }
    if (p.mode != Mode::none && p.mx.empty()) {
        err = "no mx pattern";
        return false;
    }
    out = std::move(p);
    return true;
}

bool mx_matches(std::string_view pattern, std::string_view host) {
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    std::string h = lower(host), pat = lower(pattern);
    if (pat.size() > 2 && pat[0] == '*' && pat[1] == '.') {
        auto dot = h.find('.');
        return dot != std::string::npos && dot > 0 && h.compare(dot + 1, std::string::npos, pat, 2) == 0;
    }
    return !h.empty() && h == pat;
}

bool policy_matches(const Policy& p, std::string_view host) {
    for (auto& m : p.mx)
        if (mx_matches(m, host)) return true;
    return false;
}

std::vector<std::string> encode_lookup(const Lookup& l) {
    std::vector<std::string> r;
    if (!l.found) return r;
    r.push_back(std::string("mode ") + mode_name(l.policy.mode));
    r.push_back("max_age " + std::to_string(l.policy.max_age));
    r.push_back("id " + l.id);
    r.push_back("source " + l.source);
    r.push_back("expires " + std::to_string(l.expires));
    for (auto& m : l.policy.mx) r.push_back("mx " + m);
    return r;
}

bool decode_lookup(const std::vector<std::string>& records, Lookup& out) {
    Lookup l;
    if (records.empty()) {
        out = l;
        return true;
    }
    if (records.size() < 5 || records.size() > 5 + kMaxMxPatterns) return false;
    auto value = [&](std::size_t i, std::string_view key) -> std::optional<std::string_view> {
        std::string_view r = records[i];
        if (r.size() <= key.size() + 1 || r.substr(0, key.size()) != key || r[key.size()] != ' ') return std::nullopt;
        return r.substr(key.size() + 1);
    };
    auto mode = value(0, "mode"), age = value(1, "max_age"), id = value(2, "id"), src = value(3, "source"),
         exp = value(4, "expires");
    if (!mode || !age || !id || !src || !exp) return false;
    if (*mode == "enforce") l.policy.mode = Mode::enforce;
    else if (*mode == "testing") l.policy.mode = Mode::testing;
    else if (*mode == "none") l.policy.mode = Mode::none;
    else return false;
    if (!parse_decimal(*age, 10, l.policy.max_age) || l.policy.max_age > kMaxAgeCap) return false;
    if (id->size() > kMaxIdLength || (*src != "fetched" && *src != "cached")) return false;
    for (char c : *id)
        if (!is_alnum(c)) return false;
    if (!parse_decimal(*exp, 20, l.expires)) return false;
    l.id = std::string(*id);
    l.source = std::string(*src);
    for (std::size_t i = 5; i < records.size(); i++) {
        auto m = value(i, "mx");
        if (!m) return false;
        std::string_view host = *m;
        if (host.substr(0, 2) == "*.") host.remove_prefix(2);
        if (!valid_hostname(host)) return false;
        l.policy.mx.emplace_back(*m);
    }
    l.found = true;
    out = std::move(l);
    return true;
}

}  // namespace mta::sts
