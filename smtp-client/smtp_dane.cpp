// TLS levels and DANE (RFC 7672) for the SMTP client. The parsing and the decision are pure; the
// OpenSSL part only configures and reads back SSL_dane_* state (OpenSSL does the matching itself).
#include "smtp-client/smtp_dane.h"

#include <charconv>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "smtp-client/smtp_reply.h"

namespace mta::smtp {
namespace {

bool parse_u8(std::string_view s, uint8_t& out) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v > 255 || s.empty()) return false;
    out = uint8_t(v);
    return true;
}

int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

bool parse_tls_level(std::string_view s, TlsLevel& out) {
    if (s == "none") out = TlsLevel::none;
    else if (s == "may" || s.empty()) out = TlsLevel::may;
    else if (s == "encrypt") out = TlsLevel::encrypt;
    else if (s == "dane") out = TlsLevel::dane;
    else if (s == "mta-sts") out = TlsLevel::mta_sts;
    else return false;
    return true;
}

const char* tls_level_name(TlsLevel l) {
    switch (l) {
    case TlsLevel::none: return "none";
    case TlsLevel::may: return "may";
    case TlsLevel::encrypt: return "encrypt";
    case TlsLevel::dane: return "dane";
    case TlsLevel::mta_sts: return "mta-sts";
    }
    return "?";
}

std::string Tlsa::str() const {
    return std::to_string(usage) + " " + std::to_string(selector) + " " + std::to_string(mtype);
}

std::string Tlsa::text() const {
    static const char digits[] = "0123456789abcdef";
    std::string s = str() + " ";
    for (unsigned char c : data) s.append(1, digits[c >> 4]).append(1, digits[c & 15]);
    return s;
}

bool parse_tlsa_record(std::string_view rec, Tlsa& out) {
    std::string_view parts[4];
    for (int i = 0; i < 3; i++) {
        auto sp = rec.find(' ');
        if (sp == std::string_view::npos) return false;
        parts[i] = rec.substr(0, sp);
        rec.remove_prefix(sp + 1);
    }
    parts[3] = rec;
    Tlsa t;
    if (!parse_u8(parts[0], t.usage) || !parse_u8(parts[1], t.selector) || !parse_u8(parts[2], t.mtype)) return false;
    std::string_view hex = parts[3];
    if (hex.empty() || hex.size() % 2 || hex.size() > 8192) return false;
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
        if (hi < 0 || lo < 0) return false;
        t.data.push_back(static_cast<unsigned char>(hi * 16 + lo));
    }
    out = std::move(t);
    return true;
}

bool tlsa_usable(const Tlsa& t) {
    if (t.usage != 2 && t.usage != 3) return false;  // PKIX-TA/PKIX-EE are unusable for SMTP (RFC 7672 §3.1.3)
    if (t.selector > 1) return false;
    switch (t.mtype) {
    case 0: return !t.data.empty();
    case 1: return t.data.size() == 32;
    case 2: return t.data.size() == 64;
    default: return false;
    }
}

DaneDecision decide_dane(const DnsAnswer& a) {
    DaneDecision d;
    if (a.dnssec == uint64_t(ipc::DnssecStatus::bogus)) {
        d.kind = DaneDecision::skip;
        d.why = "TLSA lookup failed DNSSEC validation";
        return d;
    }
    if (a.rcode != kRcodeNoError && a.rcode != kRcodeNxdomain) {
        d.kind = DaneDecision::skip;
        d.why = "TLSA lookup failed: " + (a.rcode == kRcodeServfail ? std::string("SERVFAIL") : sanitize(a.text, 80));
        return d;
    }
    if (a.dnssec != uint64_t(ipc::DnssecStatus::secure) || a.rcode == kRcodeNxdomain || a.records.empty())
        return d;  // no authenticated TLSA: opportunistic
    for (auto& r : a.records) {
        Tlsa t;
        if (d.records.size() < kMaxTlsaRecords && parse_tlsa_record(r, t) && tlsa_usable(t))
            d.records.push_back(std::move(t));
    }
    d.kind = d.records.empty() ? DaneDecision::encrypt : DaneDecision::dane;
    return d;
}

std::string tlsa_name(const std::string& host, uint16_t port) {
    return "_" + std::to_string(port) + "._tcp." + host;
}

bool dane_attach(SSL* ssl, const std::vector<std::string>& names, const std::vector<Tlsa>& records, std::string& err) {
    if (names.empty() || SSL_dane_enable(ssl, names[0].c_str()) <= 0) {
        err = "cannot enable DANE";
        return false;
    }
    // RFC 7672 §3.2.1: DANE-EE(3) authenticates the key alone; the certificate's names do not matter.
    SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
    for (std::size_t i = 1; i < names.size(); i++) SSL_add1_host(ssl, names[i].c_str());
    int usable = 0;
    for (auto& t : records)
        if (SSL_dane_tlsa_add(ssl, t.usage, t.selector, t.mtype, t.data.data(), t.data.size()) > 0) usable++;
    if (usable == 0) {
        err = "no usable TLSA records";
        return false;
    }
    SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);  // checked after the handshake, to log why
    return true;
}

bool dane_verified(SSL* ssl, std::string& detail) {
    long v = SSL_get_verify_result(ssl);
    int depth = SSL_get0_dane_authority(ssl, nullptr, nullptr);
    if (v != X509_V_OK || depth < 0) {
        detail = v != X509_V_OK ? X509_verify_cert_error_string(v) : "no TLSA record matched";
        return false;
    }
    uint8_t u = 0, s = 0, m = 0;
    SSL_get0_dane_tlsa(ssl, &u, &s, &m, nullptr, nullptr);
    detail = std::to_string(u) + " " + std::to_string(s) + " " + std::to_string(m) + " depth=" + std::to_string(depth);
    return true;
}

}  // namespace mta::smtp
