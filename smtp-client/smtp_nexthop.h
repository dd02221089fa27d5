// Next-hop selection (RFC 5321 §5, RFC 7505): destination parsing, MX ordering, loop detection and
// the mapping of DNS outcomes to delivery results. Pure functions; randomness is injected.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/dns_link.h"
#include "common/protocol.h"

namespace mta::smtp {

inline constexpr uint16_t kQtypeA = 1, kQtypeMx = 15, kQtypeAaaa = 28;
inline constexpr std::size_t kMaxAddressesPerAttempt = 5;  // addresses tried per delivery attempt
// SMTP sessions (greeting received) per delivery attempt, as Postfix's smtp_mx_session_limit: a soft
// failure in a session moves the open recipients on to the next address only while below this.
inline constexpr std::size_t kMaxSessionsPerAttempt = 2;
inline constexpr std::size_t kMaxMxHosts = 10;             // MX hosts whose addresses we look up

struct Destination {
    bool mx = true;      // look up MX records of `host`; false: connect to `host` (A/AAAA or literal)
    std::string host;    // lower-cased domain or address (no brackets)
    uint16_t port = 25;
    // Connection cache key: "[host]:port" for direct, "host:port" for MX destinations.
    std::string key() const;
};

// The destination for a message: a transport_map nexthop "smtp:DEST" or an explicit "[host]" /
// "[host]:port" nexthop wins, then relayhost ("[host]:port", "[host]", "host:port", "host"), then the
// MX of the nexthop domain. DEST is any of the relayhost forms.
// nullopt when nexthop or relayhost is syntactically invalid (`err` says why).
std::optional<Destination> choose_destination(std::string_view nexthop, std::string_view relayhost,
                                              uint16_t default_port, std::string& err);

struct MxHost {
    uint16_t pref = 0;
    std::string name;  // lower-cased, no trailing dot; "." for a null MX
};

// "10 mx.example.com" -> MxHost. False on anything else.
bool parse_mx_record(std::string_view rec, MxHost& out);

// Sort by preference, random order among equal preferences (rng returns uniform 32-bit values).
void order_mx(std::vector<MxHost>& hosts, const std::function<uint32_t()>& rng);

// RFC 7505: a single MX "0 ." (or any "." host) means the domain accepts no mail.
bool is_null_mx(const std::vector<MxHost>& hosts);

// Loop avoidance (RFC 5321 §5.1): drop every MX with preference >= the best one naming us.
// Returns true if hosts remain; false means the best MX is ourselves (mail loops back).
bool drop_self_and_worse(std::vector<MxHost>& hosts, std::string_view my_hostname);

// Outcome of a DNS lookup as the delivery sees it.
struct DnsVerdict {
    enum Kind { ok, nodata, nxdomain, temporary } kind = ok;
    std::string why;  // for temporary: "SERVFAIL", "timeout", "DNSSEC validation failed", ...
};
DnsVerdict classify_dns(uint64_t rcode, uint64_t dnssec, std::size_t nrecords, std::string_view text);

// Whether a textual address is an IPv4 or IPv6 literal.
bool is_ip_literal(std::string_view host);

}  // namespace mta::smtp
