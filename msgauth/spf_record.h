// SPF records (RFC 7208 §4.5, §5, §6, §12): picking the one "v=spf1" record out of a TXT set and parsing
// it into directives and modifiers, plus the IP address handling the mechanisms need. TXT data is
// untrusted: any syntax error anywhere in a record is a permerror, as §4.6 says.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mta::msgauth {

inline constexpr std::size_t kMaxSpfRecordBytes = 8192;

struct IpAddress {
    bool v6 = false;
    std::array<uint8_t, 16> bytes{};  // IPv4 in the first four
    bool operator==(const IpAddress&) const = default;
};

// Dotted-quad IPv4 without leading zeros, or IPv6 text. With map_v4 an IPv4-mapped IPv6 address becomes
// IPv4 (RFC 7208 §5: a client connecting that way is checked as the IPv4 client it is).
bool parse_ip(std::string_view text, IpAddress& out, bool map_v4 = true);
std::string ip_to_text(const IpAddress& ip);  // "192.0.2.1", "2001:db8::1"
// True when `ip` and `net` are the same family and agree on the first `prefix` bits.
bool ip_in_network(const IpAddress& ip, const IpAddress& net, int prefix);
// The PTR query name: "1.2.0.192.in-addr.arpa" or the 32 nibbles under "ip6.arpa".
std::string reverse_name(const IpAddress& ip);

enum class SpfQualifier { pass, fail, softfail, neutral };
enum class SpfMechanism { all, include, a, mx, ptr, ip4, ip6, exists };

struct SpfDirective {
    SpfQualifier qualifier = SpfQualifier::pass;
    SpfMechanism mechanism = SpfMechanism::all;
    std::string domain_spec;   // a macro-string; empty = the current domain (a, mx, ptr)
    int cidr4 = 32, cidr6 = 128;
    IpAddress network;         // ip4, ip6
    std::string text;          // the term as written, for Received-SPF's mechanism=
};

struct SpfRecord {
    std::vector<SpfDirective> directives;
    std::optional<std::string> redirect;  // domain-spec
    std::optional<std::string> exp;       // domain-spec
};

// "v=spf1" (any case) followed by a space or the end (§4.5).
bool is_spf_record(std::string_view txt);

// The whole record, version included. Errors: unknown mechanisms, bad qualifiers, missing or
// malformed domain-specs (which must end in a top label or a macro), bad macros, out-of-range CIDR
// lengths, malformed addresses, redirect= or exp= twice, non-printable bytes, over kMaxSpfRecordBytes.
bool parse_spf_record(std::string_view txt, SpfRecord& out, std::string& err);

}  // namespace mta::msgauth
