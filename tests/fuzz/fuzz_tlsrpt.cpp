// libFuzzer target for TLS-RPT input we do not control: the counts mta-smtp sends with a deliver_result
// (and the queue keeps in LMDB), tlsrpt::Aggregate::decode, and the _smtp._tls TXT records from DNS,
// tlsrpt::parse_record. No crash or UB on any bytes; an accepted aggregate re-encodes to the same bytes
// and makes a report whose JSON and message can be built; a parsed record has addresses, not garbage.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/tlsrpt.h"
#include "common/wire/maildrop.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::string err;
    tlsrpt::Aggregate a;
    if (tlsrpt::Aggregate::decode(in, a, err)) {
        require(a.encode() == in);
        for (const std::string& d : a.domains()) {
            tlsrpt::ReportMeta meta{"org", "postmaster@example.com", "1", 0, 86400};
            require(!tlsrpt::report_json(a, d, meta).empty());
            tlsrpt::MessageMeta mm{"postmaster@example.com", "tlsrpt@example.net", "mx.example.com", "id@example.com"};
            require(!tlsrpt::report_message(a, d, meta, mm, err).empty());
        }
    }
    tlsrpt::Rua rua;
    if (tlsrpt::parse_record(in, rua, err)) {
        require(!rua.mailto.empty() || !rua.https.empty());
        for (auto& m : rua.mailto) require(wire::maildrop_address_ok(m));
    }
    return 0;
}
