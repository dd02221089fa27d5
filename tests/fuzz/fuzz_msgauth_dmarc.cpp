// libFuzzer target for DMARC: the record parser, the From-domain extraction and the evaluation with
// hostile answers: no crash, bounded values, at most two queries, and a pass only with alignment.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "msgauth/dmarc.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::msgauth;

namespace {


const PublicSuffixList& psl() {
    static PublicSuffixList list = [] {
        PublicSuffixList l;
        std::string err;
        l.load_text("com\nuk\nco.uk\nexample\n*.ck\n!www.ck\n", err);
        return l;
    }();
    return list;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);

    DmarcRecord rec;
    std::string err;
    if (parse_dmarc_record(in, rec, err)) {
        require(is_dmarc_record(in) && rec.pct <= 100);
        require(!rec.policy_defaulted || (!rec.rua.empty() && rec.policy == DmarcPolicy::none));
    }

    HeaderSection hs;
    if (parse_header_section("From:" + in + "\r\n\r\n", hs, err)) {
        if (auto d = from_domain(hs.fields, err)) require(valid_dns_name(*d, false));
    }
    std::string org = psl().organizational_domain(in);
    require(org.size() <= in.size());

    DmarcInput input;
    input.from_domain = data[0] % 2 ? "mail.example.co.uk" : "example.com";
    input.spf = data[0] % 3 ? AuthResult::pass : AuthResult::fail;
    input.spf_domain = data[0] % 5 ? "bounce.example.org" : "example.com";
    input.dkim = {{data[0] % 7 ? AuthResult::fail : AuthResult::pass, "example.co.uk"}};
    input.random_percent = data[0] % 100;
    DmarcCheck c(psl(), input);
    int queries = 0;
    while (!c.done()) {
        require(++queries <= 2 && c.query().name.starts_with("_dmarc."));
        DnsAnswer a{DnsAnswer::Status::ok, {in}};
        if (data[0] % 11 == 0) a = {DnsAnswer::Status::nxdomain, {}};
        if (data[0] % 13 == 0) a = {DnsAnswer::Status::error, {}};
        c.answer(a);
    }
    const DmarcVerdict& v = c.verdict();
    require(v.result != AuthResult::pass || v.spf_aligned || v.dkim_aligned);
    require(v.disposition == DmarcDisposition::none || v.result == AuthResult::fail);
    return 0;
}
