// Outbound TLS policy: the configured level (none/may/encrypt/dane/mta-sts) and DANE for SMTP (RFC 7672):
// TLSA records parsed from the resolver's text, the per-host decision from a TLSA answer, and the
// OpenSSL glue (SSL_dane_*). TLSA data is remote DNS data: parsed strictly, bounded, never trusted
// unless the resolver says the answer was DNSSEC-validated ("secure").
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "smtp-client/smtp_targets.h"

typedef struct ssl_st SSL;

namespace mta::smtp {

inline constexpr uint16_t kQtypeTlsa = 52;
inline constexpr std::size_t kMaxTlsaRecords = 20;

// mta_sts: DANE where it applies, else the domain's MTA-STS policy (smtp_mta_sts.h); as a session
// level it means TLS required and the certificate verified by WebPKI for the MX host name.
enum class TlsLevel { none, may, encrypt, dane, mta_sts };
bool parse_tls_level(std::string_view s, TlsLevel& out);
const char* tls_level_name(TlsLevel l);

struct Tlsa {
    uint8_t usage = 0, selector = 0, mtype = 0;
    std::vector<unsigned char> data;
    std::string str() const;   // "3 1 1" (without the data)
    std::string text() const;  // "3 1 1 0a1b..." (presentation form, as parse_tlsa_record reads it)
};

// "U S M hexdata" -> Tlsa. False on anything else (bad numbers, odd or non-hex data, over 4 KiB).
bool parse_tlsa_record(std::string_view rec, Tlsa& out);

// RFC 7672 §3.1: only DANE-TA(2) and DANE-EE(3), selector 0/1, matching type 0/1/2 with the right length.
bool tlsa_usable(const Tlsa& t);

// What to do with one MX host, given the answer to _port._tcp.host TLSA (asked only when the MX and
// address lookups were DNSSEC-secure). RFC 7672 §2.2.
struct DaneDecision {
    enum Kind {
        may,      // insecure or no TLSA: opportunistic TLS as at level "may"
        encrypt,  // secure TLSA RRset, none usable: TLS required, not authenticated
        dane,     // usable records: TLS required and verified against `records`
        skip,     // the lookup failed or was bogus: do not connect to this host
    } kind = may;
    std::vector<Tlsa> records;
    std::string why;  // for skip
};
DaneDecision decide_dane(const DnsAnswer& a);

// The TLSA owner name for host:port ("_25._tcp.mx.example").
std::string tlsa_name(const std::string& host, uint16_t port);

// Enable DANE on a fresh SSL before the handshake (its SSL_CTX needs SSL_CTX_dane_enable). `names` are
// the reference identifiers for DANE-TA name checks: the MX host first (also the SNI), then the domain.
bool dane_attach(SSL* ssl, const std::vector<std::string>& names, const std::vector<Tlsa>& records, std::string& err);

// After the handshake: whether a TLSA record authenticated the peer. `detail` says which record
// matched ("3 1 1 depth=0") or why verification failed.
bool dane_verified(SSL* ssl, std::string& detail);

}  // namespace mta::smtp
