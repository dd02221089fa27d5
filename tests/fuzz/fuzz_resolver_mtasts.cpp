// libFuzzer target for the MTA-STS parsers that see remote bytes (common/mta_sts.cpp: TXT record,
// policy body, mx matching, IPC decoding; resolver/mta_sts_http.cpp: HTTP response, cache file).
// Invariants: no crash/UB; an accepted policy re-parses to the same thing and respects every bound.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/mta_sts.h"
#include "resolver/mta_sts_http.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta;
using namespace mta::resolver;

namespace {


void check_policy(std::string_view in) {
    sts::Policy p;
    std::string err;
    if (!sts::parse_policy(in, p, err)) {
        require(!err.empty());
        return;
    }
    require(p.max_age <= sts::kMaxAgeCap && p.mx.size() <= sts::kMaxMxPatterns);
    require(p.mode == sts::Mode::none || !p.mx.empty());
    // Through the IPC form and back: nothing gained, nothing lost.
    sts::Lookup l;
    l.found = true;
    l.policy = p;
    l.id = "x1";
    l.source = "fetched";
    sts::Lookup back;
    require(sts::decode_lookup(sts::encode_lookup(l), back));
    require(back.policy.mx == p.mx && back.policy.max_age == p.max_age && back.policy.mode == p.mode);
    for (auto& m : p.mx) {
        std::string host = m.substr(0, 2) == "*." ? "a" + m.substr(1) : m;
        require(sts::policy_matches(p, host));
    }
    // A cache file holding it decodes to the same policy.
    CachedPolicy c;
    c.id = "x1";
    c.fetched = 5;
    c.policy = p;
    c.body = std::string(in);
    CachedPolicy d;
    require(decode_cache_file(encode_cache_file(c), d, err) && d.policy.mx == p.mx);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string buf(reinterpret_cast<const char*>(data), size);
    const std::string_view in(buf);
    if (auto id = sts::parse_txt(in)) require(!id->empty() && id->size() <= sts::kMaxIdLength);
    std::vector<std::string> recs;
    for (std::size_t pos = 0; pos <= in.size();) {
        std::size_t sep = in.find('\n', pos);
        if (sep == std::string_view::npos) sep = in.size();
        recs.emplace_back(in.substr(pos, sep - pos));
        pos = sep + 1;
    }
    std::string why;
    sts::select_txt(recs, why);
    sts::Lookup l;
    if (sts::decode_lookup(recs, l) && l.found) {
        sts::Lookup again;
        require(sts::decode_lookup(sts::encode_lookup(l), again) && again.policy.mx == l.policy.mx);
    }
    check_policy(in);
    std::string err;
    if (auto body = parse_sts_http_response(in, err)) {
        require(body->size() <= sts::kMaxPolicyBytes);
        check_policy(*body);
    }
    CachedPolicy c;
    if (decode_cache_file(in, c, err)) require(c.policy.max_age <= sts::kMaxAgeCap);
    auto nl = in.find('\n');
    if (nl != std::string_view::npos) sts::mx_matches(in.substr(0, nl), in.substr(nl + 1));
    return 0;
}
