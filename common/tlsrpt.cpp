// RFC 8460 TLS reporting, the counting side: the aggregate counts and their checked storage form
// (common/tlsrpt.h; the report side is tlsrpt_report.cpp). Bytes from storage are never trusted.
#include "common/tlsrpt.h"

#include <zlib.h>

#include <algorithm>

#include "common/address.h"

namespace mta::tlsrpt {
namespace {

constexpr uint8_t kFormatVersion = 1;

constexpr std::string_view kResultTypes[] = {
    // §4.3.1 negotiation failures
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired", "certificate-not-trusted",
    "validation-failure",
    // §4.3.2 MTA-STS policy failures
    "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
    // §4.3.3 DNSSEC/DANE failures
    "tlsa-invalid", "dnssec-invalid", "dane-required",
};

uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

std::string clip(std::string_view s, std::size_t max) { return std::string(s.substr(0, max)); }


std::vector<std::string> clip_list(const std::vector<std::string>& v, std::size_t max) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < v.size() && i < kMaxPolicyStrings; i++) out.push_back(clip(v[i], max));
    return out;
}

bool same_policy(const Policy& a, const Policy& b) {
    return a.type == b.type && a.domain == b.domain && a.strings == b.strings &&
           a.mx_host_patterns == b.mx_host_patterns;
}

bool same_detail(const FailureDetail& a, const FailureDetail& b) {
    return a.result_type == b.result_type && a.sending_mta_ip == b.sending_mta_ip &&
           a.receiving_mx_hostname == b.receiving_mx_hostname && a.receiving_mx_helo == b.receiving_mx_helo &&
           a.receiving_ip == b.receiving_ip && a.additional_information == b.additional_information &&
           a.failure_reason_code == b.failure_reason_code;
}

// Counts d into its group; a new group only while there is room (the total was counted already).
void add_detail(Policy& p, const FailureDetail& d) {
    for (auto& x : p.details)
        if (same_detail(x, d)) {
            x.count = sat_add(x.count, d.count);
            return;
        }
    if (p.details.size() < kMaxDetailsPerPolicy) p.details.push_back(d);
}

// --- storage form: varints (LEB128, minimal) and length-prefixed strings, CRC-32 trailer

void put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out += char((v & 0x7f) | 0x80);
        v >>= 7;
    }
    out += char(v);
}

void put_str(std::string& out, std::string_view s) {
    put_varint(out, s.size());
    out.append(s);
}

void put_list(std::string& out, const std::vector<std::string>& v) {
    put_varint(out, v.size());
    for (auto& s : v) put_str(out, s);
}

struct Reader {
    explicit Reader(std::string_view s) : in(s) {}
    std::string_view in;
    std::size_t pos = 0;
    std::string err;

    bool fail(std::string why) {
        if (err.empty()) err = std::move(why);
        return false;
    }
    bool varint(uint64_t& v) {
        v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (pos >= in.size()) return fail("truncated");
            auto b = static_cast<uint8_t>(in[pos++]);
            if (shift == 63 && b > 1) return fail("number overflows 64 bits");
            if (shift > 0 && b == 0) return fail("non-minimal number");
            v |= uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) return true;
        }
        return fail("number overflows 64 bits");
    }
    bool count(uint64_t& n, uint64_t max, const char* what) {
        if (!varint(n)) return false;
        return n <= max || fail(std::string("too many ") + what);
    }
    bool str(std::string& s, std::size_t max) {
        uint64_t n;
        if (!varint(n)) return false;
        if (n > max) return fail("string too long");
        if (n > in.size() - pos) return fail("truncated");
        s.assign(in.substr(pos, n));
        pos += n;
        return true;
    }
    bool list(std::vector<std::string>& v, std::size_t max_len) {
        uint64_t n;
        if (!count(n, kMaxPolicyStrings, "policy strings")) return false;
        v.resize(n);
        for (auto& s : v)
            if (!str(s, max_len)) return false;
        return true;
    }
};

bool read_detail(Reader& r, FailureDetail& d) {
    for (std::string* s : {&d.result_type, &d.sending_mta_ip, &d.receiving_mx_hostname, &d.receiving_mx_helo,
                           &d.receiving_ip, &d.additional_information, &d.failure_reason_code})
        if (!r.str(*s, kMaxField)) return false;
    if (!r.varint(d.count)) return false;
    if (!valid_result_type(d.result_type)) return r.fail("unknown result type");
    return d.count > 0 || r.fail("empty failure group");
}

bool read_policy(Reader& r, const std::string& domain, Policy& p) {
    p.domain = domain;
    if (!r.str(p.type, kMaxField) || !r.list(p.strings, kMaxPolicyString) ||
        !r.list(p.mx_host_patterns, kMaxField) || !r.varint(p.successes) || !r.varint(p.failures))
        return false;
    if (!valid_policy_type(p.type)) return r.fail("unknown policy type");
    if (p.successes == 0 && p.failures == 0) return r.fail("policy without sessions");
    uint64_t n, sum = 0;
    if (!r.count(n, kMaxDetailsPerPolicy, "failure groups")) return false;
    for (uint64_t i = 0; i < n; i++) {
        FailureDetail d;
        if (!read_detail(r, d)) return false;
        for (auto& x : p.details)
            if (same_detail(x, d)) return r.fail("duplicate failure group");
        sum = sat_add(sum, d.count);
        p.details.push_back(std::move(d));
    }
    return sum <= p.failures || r.fail("failure groups exceed the failure total");
}


}  // namespace

bool valid_result_type(std::string_view s) {
    return std::find(std::begin(kResultTypes), std::end(kResultTypes), s) != std::end(kResultTypes);
}

bool valid_policy_type(std::string_view s) { return s == "sts" || s == "tlsa" || s == "no-policy-found"; }

// --- Aggregate

Policy* Aggregate::find_or_add(const Policy& key) {
    auto& policies = domains_[key.domain];
    for (auto& p : policies)
        if (same_policy(p, key)) return &p;
    if (policies.size() >= kMaxPoliciesPerDomain) return nullptr;
    Policy p;
    p.type = key.type;
    p.domain = key.domain;
    p.strings = key.strings;
    p.mx_host_patterns = key.mx_host_patterns;
    policies.push_back(std::move(p));
    return &policies.back();
}

void Aggregate::add(const Result& r, uint64_t count) {
    if (count == 0) return;
    Policy key;
    key.domain = addr::lower(clip(r.policy_domain, kMaxField));
    if (key.domain.empty()) return;
    key.type = valid_policy_type(r.policy_type) ? r.policy_type : "no-policy-found";
    key.strings = clip_list(r.policy_strings, kMaxPolicyString);
    key.mx_host_patterns = clip_list(r.mx_host_patterns, kMaxField);
    Policy* p = find_or_add(key);
    if (!p) return;
    if (r.success) {
        p->successes = sat_add(p->successes, count);
        return;
    }
    p->failures = sat_add(p->failures, count);
    FailureDetail d;
    d.result_type = r.result_type;
    d.sending_mta_ip = clip(r.sending_mta_ip, kMaxField);
    d.receiving_mx_hostname = clip(r.receiving_mx_hostname, kMaxField);
    d.receiving_mx_helo = clip(r.receiving_mx_helo, kMaxField);
    d.receiving_ip = clip(r.receiving_ip, kMaxField);
    d.additional_information = clip(r.additional_information, kMaxField);
    d.failure_reason_code = clip(r.failure_reason_code, kMaxField);
    if (!valid_result_type(d.result_type)) {
        // §4.3.1: validation-failure is the catch-all; keep what the client said as the reason.
        if (d.failure_reason_code.empty()) d.failure_reason_code = clip(r.result_type, kMaxField);
        d.result_type = "validation-failure";
    }
    d.count = count;
    add_detail(*p, d);
}

void Aggregate::merge(const Aggregate& other) {
    if (&other == this) {
        Aggregate copy = other;
        merge(copy);
        return;
    }
    for (auto& [domain, policies] : other.domains_)
        for (auto& op : policies) {  // op.domain is domain
            Policy* p = find_or_add(op);
            if (!p) continue;
            p->successes = sat_add(p->successes, op.successes);
            p->failures = sat_add(p->failures, op.failures);
            for (auto& d : op.details) add_detail(*p, d);
        }
}

void Aggregate::erase(const std::string& domain) { domains_.erase(domain); }

std::vector<std::string> Aggregate::domains() const {
    std::vector<std::string> out;
    for (auto& [domain, policies] : domains_) out.push_back(domain);
    return out;
}

const std::vector<Policy>& Aggregate::policies(const std::string& domain) const {
    static const std::vector<Policy> kNone;
    auto it = domains_.find(domain);
    return it == domains_.end() ? kNone : it->second;
}

std::string Aggregate::encode() const {
    std::string out(1, char(kFormatVersion));
    put_varint(out, domains_.size());
    for (auto& [domain, policies] : domains_) {
        put_str(out, domain);
        put_varint(out, policies.size());
        for (auto& p : policies) {
            put_str(out, p.type);
            put_list(out, p.strings);
            put_list(out, p.mx_host_patterns);
            put_varint(out, p.successes);
            put_varint(out, p.failures);
            put_varint(out, p.details.size());
            for (auto& d : p.details) {
                for (const std::string* s : {&d.result_type, &d.sending_mta_ip, &d.receiving_mx_hostname,
                                             &d.receiving_mx_helo, &d.receiving_ip, &d.additional_information,
                                             &d.failure_reason_code})
                    put_str(out, *s);
                put_varint(out, d.count);
            }
        }
    }
    uint32_t crc = uint32_t(crc32_z(0, reinterpret_cast<const Bytef*>(out.data()), out.size()));
    for (int shift = 24; shift >= 0; shift -= 8) out += char((crc >> shift) & 0xff);
    return out;
}

bool Aggregate::decode(std::string_view in, Aggregate& out, std::string& err) {
    if (in.empty()) {
        err = "empty";
        return false;
    }
    if (static_cast<uint8_t>(in[0]) != kFormatVersion) {
        err = "unknown format version " + std::to_string(static_cast<uint8_t>(in[0]));
        return false;
    }
    if (in.size() < 6) {
        err = "truncated";
        return false;
    }
    std::size_t body = in.size() - 4;
    uint32_t stored = 0;
    for (std::size_t i = body; i < in.size(); i++) stored = (stored << 8) | static_cast<uint8_t>(in[i]);
    if (stored != uint32_t(crc32_z(0, reinterpret_cast<const Bytef*>(in.data()), body))) {
        err = "checksum mismatch";
        return false;
    }
    Reader r{in.substr(1, body - 1)};
    Aggregate agg;
    uint64_t ndomains;
    bool ok = r.varint(ndomains);
    std::string prev;
    for (uint64_t i = 0; ok && i < ndomains; i++) {
        std::string domain;
        uint64_t npolicies;
        ok = r.str(domain, kMaxField) && r.count(npolicies, kMaxPoliciesPerDomain, "policies");
        if (ok && (domain.empty() || addr::lower(domain) != domain)) ok = r.fail("bad domain");
        if (ok && i > 0 && !(prev < domain)) ok = r.fail("domains out of order");  // as the map encodes
        if (ok && npolicies == 0) ok = r.fail("domain without policies");
        std::vector<Policy> policies;
        for (uint64_t k = 0; ok && k < npolicies; k++) {
            Policy p;
            ok = read_policy(r, domain, p);
            for (auto& x : policies)
                if (ok && same_policy(x, p)) ok = r.fail("duplicate policy");
            if (ok) policies.push_back(std::move(p));
        }
        if (ok) agg.domains_.emplace(domain, std::move(policies));
        prev = std::move(domain);
    }
    if (ok && r.pos != r.in.size()) ok = r.fail("trailing bytes");
    if (!ok) {
        err = r.err;
        return false;
    }
    out = std::move(agg);
    return true;
}

}  // namespace mta::tlsrpt
