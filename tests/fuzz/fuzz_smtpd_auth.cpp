// libFuzzer target for SASL decoding (smtpd/smtpd_auth.cpp): no crash/UB on any bytes; accepted
// credentials never carry CR, LF or NUL; base64 decoding round-trips.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtpd/smtpd_auth.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::smtpd;

namespace {
bool clean(const std::string& s) { return s.find_first_of(std::string("\r\n\0", 3)) == std::string::npos; }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    if (auto d = base64_decode(in)) {
        require(base64_encode(*d) == in);
        if (auto c = parse_plain(*d)) require(clean(c->user) && clean(c->password) && !c->user.empty());
    }
    if (auto c = parse_plain(in)) require(clean(c->user) && clean(c->password) && c->user.size() <= 255);
    if (valid_login_value(in)) require(clean(std::string(in)));
    require(base64_decode(base64_encode(in)) == std::string(in));
    return 0;
}
