// libFuzzer target for the DKIM verifier over whole hostile messages and hostile key answers: no crash,
// at most the capped number of verdicts, every query answered means done, chunking changes nothing.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "msgauth/dkim_verify.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::msgauth;

namespace {


// The Ed25519 key of the seed corpus' signatures.
const char* kKey = "v=DKIM1; k=ed25519; p=ZACm50YAYPoFLWlB5Xir0iEXMlvAVvDq2gBoqTXXmxk=";

std::vector<DkimVerdict> run(const HeaderSection& hs, std::string_view body, std::size_t step, uint8_t mode) {
    DkimVerifier v(hs.fields, 4, 1000);
    for (std::size_t i = 0; i < body.size(); i += step) v.feed_body(body.substr(i, step));
    v.finish_body();
    for (const DnsQuery& q : v.queries()) {
        require(q.type == DnsType::txt && q.name.find("._domainkey.") != std::string::npos);
        DnsAnswer a{DnsAnswer::Status::ok, {kKey}};
        if (mode % 4 == 1) a = {DnsAnswer::Status::nxdomain, {}};
        if (mode % 4 == 2) a = {DnsAnswer::Status::error, {}};
        if (mode % 4 == 3) a.records = {std::string(body.substr(0, 300)), kKey};
        v.answer(q, a);
    }
    require(v.done() && v.queries().empty());
    return v.results();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::string msg(reinterpret_cast<const char*>(data) + 1, size - 1);
    HeaderSection hs;
    std::string err;
    if (!parse_header_section(msg, hs, err)) return 0;
    const std::string_view body = std::string_view(msg).substr(hs.body_offset);
    auto whole = run(hs, body, body.size() + 1, data[0]);
    auto pieces = run(hs, body, 1 + data[0] % 7, data[0]);
    require(!whole.empty() && whole.size() <= 4 && whole.size() == pieces.size());
    for (std::size_t i = 0; i < whole.size(); i++) {
        require(whole[i].result == pieces[i].result && whole[i].reason == pieces[i].reason);
        require(whole[i].result != AuthResult::pass || whole[i].reason.empty());
    }
    return 0;
}
