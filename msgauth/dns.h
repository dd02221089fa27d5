// The DNS questions msgauth's checks ask and the answers their caller feeds back. The checks never
// do I/O: the daemon forwards each query to mta-resolver and hands the answer in when it arrives.
#pragma once
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
};

}  // namespace mta::msgauth
