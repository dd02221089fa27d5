// The DNS questions msgauth's checks ask and the answers their caller feeds back. The checks never
// do I/O: the daemon forwards each query to mta-resolver and hands the answer in when it arrives.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mta::msgauth {

enum class DnsType { a, aaaa, mx, txt, ptr };

struct DnsQuery {
    std::string name;  // lower-case, no trailing dot
    DnsType type = DnsType::txt;
    bool operator==(const DnsQuery&) const = default;
};

// Records in mta-resolver's presentation text: A "192.0.2.1", AAAA "2001:db8::1", MX "10 mx.example",
// TXT the character-strings of one record concatenated, PTR "host.example".
struct DnsAnswer {
    enum class Status {
        ok,        // NOERROR; no records means NODATA
        nxdomain,  // RCODE 3
        error,     // SERVFAIL, timeout, bogus DNSSEC, resolver down: retrying may help
    };
    Status status = Status::error;
    std::vector<std::string> records;

    // A "void" lookup in RFC 7208 §4.6.4 terms: NXDOMAIN or an empty NOERROR.
    bool is_void() const { return status == Status::nxdomain || (status == Status::ok && records.empty()); }

    // What mta-resolver said (DNS rcode, or its synthetic timeout code; a bogus DNSSEC answer) as a
    // check sees it: only NOERROR and NXDOMAIN are answers, everything else may change on a retry.
    static DnsAnswer from_resolver(uint64_t rcode, bool bogus, std::vector<std::string> records) {
        DnsAnswer a;
        if (!bogus && rcode == 0) {
            a.status = Status::ok;
            a.records = std::move(records);
        } else if (!bogus && rcode == 3) {
            a.status = Status::nxdomain;
        }
        return a;
    }
};

// The RR type number mta-resolver is asked for.
inline uint16_t qtype_number(DnsType t) {
    switch (t) {
        case DnsType::a: return 1;
        case DnsType::aaaa: return 28;
        case DnsType::mx: return 15;
        case DnsType::txt: return 16;
        case DnsType::ptr: return 12;
    }
    return 16;
}

}  // namespace mta::msgauth
