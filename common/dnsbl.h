// DNS block lists (smtpd_dnsbl_zones): the zone list with Postfix's postscreen_dnsbl_sites syntax, the
// query name for a client address, and whether an A answer counts. Pure functions; mta-smtpd asks
// mta-resolver and scores the answers (smtpd/smtpd_dnsbl.cpp).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mta {

// One entry: "zone", "zone=127.0.0.2", "zone=127.0.[0..255].[2;4;10..11]", each optionally "*weight"
// (a whole number, negative for an allow list such as a DNSWL). An octet is a number, [N..M] or
// [A;B;...] (whose items may be ranges). Without "=..." any answer in 127.0.0.0/8 counts.
struct DnsblZone {
    std::string zone;  // lower-case, no trailing dot
    std::string text;  // the entry as written (for logs)
    // Per octet, the accepted values as a 256-bit set; empty vector = 127.0.0.0/8.
    std::vector<std::array<uint64_t, 4>> octets;
    int weight = 1;
};

// Parses the whitespace-separated list. False with err naming the bad entry.
bool parse_dnsbl_zones(std::string_view text, std::vector<DnsblZone>& out, std::string& err);

// "4.3.2.1.zone" for 1.2.3.4; 32 reversed nibbles for IPv6; "" for anything else.
std::string dnsbl_query_name(std::string_view ip, std::string_view zone);

// Whether the A record `addr` ("127.0.0.2") is a listing by this zone's pattern.
bool dnsbl_match(const DnsblZone& z, std::string_view addr);

}  // namespace mta
