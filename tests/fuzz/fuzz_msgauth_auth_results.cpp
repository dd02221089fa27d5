// libFuzzer target for Authentication-Results: recognizing our authserv-id in hostile header values
// never crashes; headers we build from hostile values have no bare CR or LF, no line of 998 bytes or
// more, parse back as one field, and are recognized as ours (so a later hop can strip forgeries).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "msgauth/auth_results.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::msgauth;

namespace {


void check_lines(const std::string& h) {
    require(h.ends_with("\r\n"));
    std::size_t start = 0;
    for (std::size_t i = 0; i < h.size(); i++) {
        if (h[i] == '\r') require(i + 1 < h.size() && h[i + 1] == '\n');
        if (h[i] == '\n') {
            require(i > 0 && h[i - 1] == '\r' && i - start < 998);
            start = i + 1;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string in(reinterpret_cast<const char*>(data), size);
    claims_authserv_id(in, "mx.example.org");
    claims_authserv_id("mx.example.org", in);

    // Split the input into a few hostile values.
    std::string_view rest(in);
    auto next = [&] {
        std::size_t cut = rest.find('\x01');
        std::string_view v = rest.substr(0, cut);
        rest = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);
        return std::string(v);
    };
    DkimVerdict v;
    v.result = AuthResult::fail;
    v.reason = next();
    v.domain = next();
    v.identity = next();
    v.b_prefix = next();
    v.body_length_limited = size % 2;
    DmarcVerdict d;
    d.reason = next();
    const std::string sender = next(), id = next();
    const std::string authserv = id.empty() ? "mx.example.org" : id;
    std::string h = authentication_results(authserv, {dkim_method(v), spf_method(AuthResult::pass, SpfIdentity::mailfrom,
                                                                                   sender),
                                                      dmarc_method(d, sender)});
    check_lines(h);
    HeaderSection hs;
    std::string err;
    require(parse_header_section(h + "\r\n", hs, err) && hs.fields.size() == 1);
    require(hs.fields[0].name == "Authentication-Results");
    if (authserv.find_first_of("\\\"") == std::string::npos && authserv.size() < 512) {
        bool plain = true;
        for (char c : authserv) plain = plain && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
        if (plain) require(claims_authserv_id(hs.fields[0].value(), authserv));
    }

    ReceivedSpf r;
    r.result = AuthResult::softfail;
    r.receiver = authserv;
    r.envelope_from = sender;
    r.sender = sender;
    r.helo = v.reason;
    r.mechanism = v.domain;
    r.problem = v.identity;
    std::string s = received_spf(r);
    check_lines(s);
    require(parse_header_section(s + "\r\n", hs, err) && hs.fields.size() == 1 && hs.fields[0].name == "Received-SPF");
    return 0;
}
