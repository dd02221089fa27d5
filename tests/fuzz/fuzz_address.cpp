// libFuzzer target for mta::addr: no crash/UB on any bytes, plus invariants that must hold
// for every accepted path (canonical form re-parses identically) and for xtext round trips.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/address.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::addr;

namespace {


bool printable_ascii(std::string_view s) {
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c > 0x7e) return false;
    }
    return true;
}

void check_path(std::string_view in, const PathOptions& o) {
    PathResult r = parse_path(in, o);
    if (!r.ok) {
        require(!r.error.empty() && r.enhanced != nullptr);
        return;
    }
    // rest must be a view into the caller's buffer, never into a temporary.
    require(r.rest.data() >= in.data() && r.rest.data() + r.rest.size() <= in.data() + in.size());
    const Mailbox& m = r.mailbox;
    if (m.null_path) {
        require(o.allow_null && m.str().empty());
        return;
    }
    require(!m.local.empty() && m.local.size() <= kMaxLocalPart);
    require(m.domain.size() <= kMaxDomain);
    require(!m.utf8 || o.smtputf8);
    if (m.domain.empty()) {
        require(o.allow_postmaster && m.local == "Postmaster");
    } else {
        require(valid_domain(m.domain, o.smtputf8));
    }
    for (char c : m.local + m.domain) {
        const auto b = static_cast<unsigned char>(c);
        require(b >= 0x20 && b != 0x7f);
        require(b < 0x80 || o.smtputf8);
    }
    // The canonical text must itself be an acceptable path that means the same mailbox.
    const std::string canon = "<" + m.str() + ">";
    PathResult again = parse_path(canon, o);
    require(again.ok);
    require(again.mailbox.local == m.local && again.mailbox.domain == m.domain);
    require(again.mailbox.utf8 == m.utf8 && again.mailbox.literal == m.literal);
    require(again.mailbox.str() == m.str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string buf(reinterpret_cast<const char*>(data), size);  // exact-size heap copy for ASan
    const std::string_view in(buf);

    for (int bits = 0; bits < 8; ++bits) {
        PathOptions o;
        o.allow_null = bits & 1;
        o.smtputf8 = bits & 2;
        o.allow_postmaster = bits & 4;
        check_path(in, o);
    }

    const bool d8 = valid_domain(in, true);
    if (valid_domain(in, false)) require(d8);  // SMTPUTF8 only ever widens what is accepted
    (void)lower(in);

    if (auto dec = xtext_decode(in)) {
        require(printable_ascii(*dec));
        require(xtext_decode(xtext_encode(*dec)) == *dec);
    }
    const std::string enc = xtext_encode(in);
    const auto back = xtext_decode(enc);
    if (printable_ascii(in)) require(back.has_value() && *back == buf);
    else require(!back.has_value());
    return 0;
}
