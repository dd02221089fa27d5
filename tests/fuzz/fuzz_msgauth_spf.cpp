// libFuzzer target for the SPF evaluator with hostile DNS: every answer comes from the input. The check
// always ends, within the query backstop and the term and void-lookup limits, with one of the seven results.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "msgauth/spf.h"
#include "tests/fuzz/fuzz_require.h"

using namespace mta::msgauth;

namespace {


// Answers are lines: the first byte picks the status (and how many of the following lines are records).
struct Feed {
    std::string_view rest;
    std::string_view line() {
        std::size_t nl = rest.find('\n');
        std::string_view l = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
        return l;
    }
    DnsAnswer next() {
        if (rest.empty()) return {DnsAnswer::Status::nxdomain, {}};
        std::string_view head = line();
        unsigned char c = head.empty() ? 0 : static_cast<unsigned char>(head[0]);
        if (c % 8 == 0) return {DnsAnswer::Status::error, {}};
        if (c % 8 == 1) return {DnsAnswer::Status::nxdomain, {}};
        DnsAnswer a{DnsAnswer::Status::ok, {}};
        for (unsigned n = c % 8 - 2; n > 0 && !rest.empty(); n--) a.records.emplace_back(line());
        if (head.size() > 1) a.records.emplace_back(head.substr(1));
        return a;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    SpfRequest req;
    parse_ip(data[0] % 2 ? "2001:db8::1" : "192.0.2.1", req.ip);
    req.sender = data[1] % 3 ? "user-x@example.org" : "";
    req.helo = "helo.example.net";
    req.receiver = "mx.example";
    SpfCheck c(req, data[1] % 5 ? SpfIdentity::mailfrom : SpfIdentity::helo);
    Feed feed{std::string_view(reinterpret_cast<const char*>(data) + 2, size - 2)};
    std::size_t queries = 0;
    while (!c.done()) {
        require(++queries <= kSpfMaxQueries && !c.query().name.empty());
        c.answer(feed.next());
    }
    require(c.terms() <= kSpfMaxTerms + 1 && c.void_lookups() <= kSpfMaxVoid + 1);
    require(c.result() != AuthResult::policy);
    require(c.explanation().empty() || c.result() == AuthResult::fail);
    return 0;
}
