// libFuzzer target for the DANE input the SMTP client takes from DNS: TLSA record text (as relayed by
// the resolver) and LMTP next hops. Parsers never crash; accepted TLSA records round-trip their
// lengths, and decide_dane only ever passes on usable records, at most kMaxTlsaRecords.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp-client/lmtp_nexthop.h"
#include "smtp-client/smtp_dane.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta;
using namespace mta::smtp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    Tlsa t;
    if (parse_tlsa_record(in, t)) {
        require(!t.data.empty() && t.data.size() <= 4096);
        require(in.size() >= 6 + t.data.size() * 2);
    }
    // The same bytes as a set of records, one per line, in a secure answer.
    DnsAnswer a;
    a.rcode = data && size ? data[0] % 4 : 0;
    a.dnssec = size > 1 ? data[1] % 3 : 1;
    std::size_t start = 0;
    while (start <= in.size() && a.records.size() < 100) {
        auto nl = in.find('\n', start);
        a.records.emplace_back(in.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
        if (nl == std::string_view::npos) break;
        start = nl + 1;
    }
    DaneDecision d = decide_dane(a);
    require(d.records.size() <= kMaxTlsaRecords);
    for (auto& r : d.records) require(tlsa_usable(r));
    if (d.kind == DaneDecision::dane) require(!d.records.empty());
    Target target;
    std::string err;
    if (parse_lmtp_nexthop(in, target, err)) require(target.salen > 0 && target.salen <= sizeof target.sa);
    return 0;
}
