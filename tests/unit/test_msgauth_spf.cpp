// Unit tests for the SPF evaluator: 66 checks whose expected results come from pyspf over the same fake
// zone (msgauth_spf_pyspf.py), then the step machine itself: query order, limits, loops, PTR rules,
// exp=, the HELO identity and hostile answers.
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>

#include "msgauth/spf.h"
#include "msgauth_spf_cases.h"

using namespace mta::msgauth;

namespace {

const char* type_name(DnsType t) {
    switch (t) {
        case DnsType::a: return "A";
        case DnsType::aaaa: return "AAAA";
        case DnsType::mx: return "MX";
        case DnsType::txt: return "TXT";
        case DnsType::ptr: return "PTR";
    }
    return "?";
}

// A zone in the shape of msgauth_spf_cases.h: names with no record of any type are NXDOMAIN.
struct Zone {
    std::multimap<std::string, std::pair<std::string, std::string>> rrs;  // name -> (type, value)
    std::set<std::string> servfail;
    std::vector<DnsQuery> asked;

    void add(const std::string& name, const std::string& type, const std::string& value) {
        rrs.emplace(name, std::make_pair(type, value));
    }
    DnsAnswer lookup(const DnsQuery& q) {
        asked.push_back(q);
        if (servfail.count(q.name)) return {DnsAnswer::Status::error, {}};
        auto [b, e] = rrs.equal_range(q.name);
        if (b == e) return {DnsAnswer::Status::nxdomain, {}};
        DnsAnswer a{DnsAnswer::Status::ok, {}};
        for (auto it = b; it != e; ++it)
            if (it->second.first == type_name(q.type)) a.records.push_back(it->second.second);
        return a;
    }
};

Zone pyspf_zone() {
    Zone z;
    for (const auto& rr : spf_cases::kZone) z.add(rr.name, rr.type, rr.value);
    for (const char* s : spf_cases::kServfail) z.servfail.insert(s);
    return z;
}

SpfRequest request(const char* ip, const char* sender, const char* helo = "h.example") {
    SpfRequest r;
    REQUIRE(parse_ip(ip, r.ip));
    r.sender = sender;
    r.helo = helo;
    r.receiver = "mx.receiver.example";
    r.now = 1700000000;
    return r;
}

void drive(SpfCheck& c, Zone& z) {
    for (int i = 0; !c.done() && i < 1000; i++) c.answer(z.lookup(c.query()));
    REQUIRE(c.done());
}

AuthResult check(Zone& z, const SpfRequest& r, SpfIdentity id = SpfIdentity::mailfrom) {
    SpfCheck c(r, id);
    drive(c, z);
    return c.result();
}

}  // namespace

TEST_CASE("the same results as pyspf over the same zone") {
    int n = 0;
    for (const auto& tc : spf_cases::kCases) {
        Zone z = pyspf_zone();
        SpfCheck c(request(tc.ip, tc.sender, tc.helo), SpfIdentity::mailfrom);
        drive(c, z);
        INFO(tc.ip, " ", tc.sender, " ", tc.helo, ": ", c.problem());
        CHECK(std::string(result_name(c.result())) == tc.result);
        CHECK(c.explanation() == tc.explanation);
        n++;
    }
    CHECK(n >= 30);
}

TEST_CASE("query order, mechanism text and problem text") {
    Zone z = pyspf_zone();
    SpfCheck c(request("192.0.2.10", "user@MX.Example."), SpfIdentity::mailfrom);
    CHECK(c.domain() == "mx.example");
    REQUIRE_FALSE(c.done());
    CHECK(c.query() == DnsQuery{"mx.example", DnsType::txt});
    drive(c, z);
    CHECK(c.result() == AuthResult::pass);
    CHECK(c.mechanism() == "mx");
    REQUIRE(z.asked.size() == 3);
    CHECK(z.asked[1] == DnsQuery{"mx.example", DnsType::mx});
    CHECK(z.asked[2] == DnsQuery{"mail.mx.example", DnsType::a});
    c.answer(DnsAnswer{});  // answers after the end are ignored
    CHECK(c.result() == AuthResult::pass);
    SpfCheck moved = std::move(c);
    CHECK(moved.mechanism() == "mx");

    SpfCheck six(request("2001:db8::10", "user@a6.example"), SpfIdentity::mailfrom);
    drive(six, z);
    CHECK(z.asked.back() == DnsQuery{"a6.example", DnsType::aaaa});

    SpfCheck d(request("198.51.100.7", "user@empty.example"), SpfIdentity::mailfrom);
    drive(d, z);
    CHECK(d.result() == AuthResult::neutral);
    CHECK(d.mechanism() == "default");
    SpfCheck t(request("192.0.2.10", "user@include-temp.example"), SpfIdentity::mailfrom);
    drive(t, z);
    CHECK(t.problem() == "DNS error for the SPF record of servfail.example");
    SpfCheck i(request("192.0.2.10", "user@include.example"), SpfIdentity::mailfrom);
    drive(i, z);
    CHECK(i.mechanism() == "include:pass-ip4.example");
}

TEST_CASE("no query at all for unusable identities") {
    for (const char* sender : {"user@localhost", "user@", "user@a..b", "user@-x.example"}) {
        SpfCheck c(request("192.0.2.1", sender), SpfIdentity::mailfrom);
        CHECK(c.done());
        CHECK(c.result() == AuthResult::none);
    }
}

TEST_CASE("HELO identity and the null sender use postmaster@HELO") {
    Zone z = pyspf_zone();
    SpfRequest r = request("192.0.2.10", "someone@none.example", "helo.example");
    SpfCheck c(r, SpfIdentity::helo);
    drive(c, z);
    CHECK(c.result() == AuthResult::pass);
    CHECK(c.sender() == "postmaster@helo.example");
    r.sender.clear();
    SpfCheck n(r, SpfIdentity::mailfrom);
    drive(n, z);
    CHECK(n.domain() == "helo.example");
    CHECK(n.result() == AuthResult::pass);
}

TEST_CASE("limits: 10 terms across includes, loops, void lookups, MX and PTR name caps") {
    Zone z;
    // A chain of 10 includes is allowed; the 11th term is one too many.
    for (int i = 0; i < 11; i++)
        z.add("c" + std::to_string(i) + ".example", "TXT", "v=spf1 include:c" + std::to_string(i + 1) + ".example -all");
    z.add("c11.example", "TXT", "v=spf1 +all");
    SpfCheck c(request("192.0.2.1", "u@c0.example"), SpfIdentity::mailfrom);
    drive(c, z);
    CHECK(c.result() == AuthResult::permerror);
    CHECK(c.problem() == "more than 10 DNS-querying terms");
    CHECK(c.terms() == 11);
    CHECK(check(z, request("192.0.2.1", "u@c1.example")) == AuthResult::pass);  // 10 terms

    z.add("self.example", "TXT", "v=spf1 include:self.example");
    z.asked.clear();
    SpfCheck loop(request("192.0.2.1", "u@self.example"), SpfIdentity::mailfrom);
    drive(loop, z);
    CHECK(loop.result() == AuthResult::permerror);
    CHECK(z.asked.size() == 11);  // the record, then 10 includes of it; the 11th include is refused

    z.add("exists.example", "TXT", "v=spf1 exists:a.nx.example exists:b.nx.example ?exists:c.nx.example -all");
    SpfCheck v(request("192.0.2.1", "u@exists.example"), SpfIdentity::mailfrom);
    drive(v, z);
    CHECK(v.result() == AuthResult::permerror);
    CHECK(v.void_lookups() == 3);

    // Ten MX names are walked, the match in the last one counts; eleven are a permerror.
    z.add("ten-mx.example", "TXT", "v=spf1 mx -all");
    for (int i = 0; i < 10; i++) {
        z.add("ten-mx.example", "MX", std::to_string(i) + " m" + std::to_string(i) + ".ten-mx.example");
        z.add("m" + std::to_string(i) + ".ten-mx.example", "A", i == 9 ? "192.0.2.1" : "203.0.113.1");
    }
    z.add("ten-mx.example", "MX", "0 .");  // a null MX among them is not asked for
    CHECK(check(z, request("192.0.2.1", "u@ten-mx.example")) == AuthResult::permerror);
    z.rrs.erase(std::prev(z.rrs.upper_bound("ten-mx.example")));
    CHECK(check(z, request("192.0.2.1", "u@ten-mx.example")) == AuthResult::pass);

    // Only the first ten PTR names are validated.
    z.add("ptr.example", "TXT", "v=spf1 ptr -all");
    for (int i = 0; i < 11; i++) {
        z.add("1.2.0.192.in-addr.arpa", "PTR", "h" + std::to_string(i) + ".ptr.example");
        z.add("h" + std::to_string(i) + ".ptr.example", "A", i == 10 ? "192.0.2.1" : "203.0.113.1");
    }
    CHECK(check(z, request("192.0.2.1", "u@ptr.example")) == AuthResult::fail);
}

TEST_CASE("PTR: DNS errors mean no match, never temperror; %{p} falls back to 'unknown'") {
    Zone z;
    z.add("p.example", "TXT", "v=spf1 ptr ?exists:%{p}.known.example -all");
    z.add("unknown.known.example", "A", "127.0.0.2");
    z.servfail.insert("1.2.0.192.in-addr.arpa");
    SpfCheck c(request("192.0.2.1", "u@p.example"), SpfIdentity::mailfrom);
    drive(c, z);
    CHECK(c.result() == AuthResult::neutral);
    CHECK(c.mechanism() == "?exists:%{p}.known.example");
    // The PTR lookup happened once, for both uses.
    int ptr_queries = 0;
    for (const DnsQuery& q : z.asked) ptr_queries += q.type == DnsType::ptr;
    CHECK(ptr_queries == 1);

    Zone y;
    y.add("p.example", "TXT", "v=spf1 ptr:p.example -all");
    y.add("1.2.0.192.in-addr.arpa", "PTR", "bad.example");
    y.add("1.2.0.192.in-addr.arpa", "PTR", "good.p.example.");
    y.servfail.insert("bad.example");
    y.add("good.p.example", "A", "192.0.2.1");
    CHECK(check(y, request("192.0.2.1", "u@p.example")) == AuthResult::pass);
}

TEST_CASE("exp=: macros in the text, and every failure leaves the explanation out") {
    Zone z;
    z.add("e.example", "TXT", "v=spf1 -all exp=why.%{d}");
    z.add("why.e.example", "TXT", "%{c} may not send for %{o} (%{r}, %{l})");
    SpfCheck c(request("2001:db8::5", "joe@e.example"), SpfIdentity::mailfrom);
    drive(c, z);
    CHECK(c.result() == AuthResult::fail);
    CHECK(c.explanation() == "2001:db8::5 may not send for e.example (mx.receiver.example, joe)");

    z.add("why.e.example", "TXT", "a second record");
    SpfCheck two(request("192.0.2.1", "joe@e.example"), SpfIdentity::mailfrom);
    drive(two, z);
    CHECK(two.result() == AuthResult::fail);
    CHECK(two.explanation().empty());

    Zone y;
    y.add("e.example", "TXT", "v=spf1 -all exp=why.e.example");
    y.add("why.e.example", "TXT", "bad %{x} macro");
    CHECK(check(y, request("192.0.2.1", "joe@e.example")) == AuthResult::fail);
    y.servfail.insert("why.e.example");
    CHECK(check(y, request("192.0.2.1", "joe@e.example")) == AuthResult::fail);
    y.add("s.example", "TXT", "v=spf1 ~all exp=why.e.example");  // only fail gets an explanation
    SpfCheck soft(request("192.0.2.1", "joe@s.example"), SpfIdentity::mailfrom);
    drive(soft, y);
    CHECK(soft.result() == AuthResult::softfail);
    CHECK(y.asked.back().name == "s.example");
}

TEST_CASE("hostile answers: garbage addresses, huge and many records, odd MX data") {
    Zone z;
    z.add("g.example", "TXT", "v=spf1 a mx -all");
    z.add("g.example", "A", "not an address");
    z.add("g.example", "A", "192.0.2.1 ");
    z.add("g.example", "MX", "garbage");
    z.add("g.example", "MX", "10 ..");
    CHECK(check(z, request("192.0.2.1", "u@g.example")) == AuthResult::fail);

    z.add("big.example", "TXT", "v=spf1 " + std::string(100000, 'a'));
    CHECK(check(z, request("192.0.2.1", "u@big.example")) == AuthResult::permerror);
    for (int i = 0; i < 1000; i++) z.add("many.example", "TXT", "google-site-verification=" + std::to_string(i));
    CHECK(check(z, request("192.0.2.1", "u@many.example")) == AuthResult::none);
    z.add("many.example", "TXT", "v=spf1 ip4:192.0.2.1 -all");
    CHECK(check(z, request("192.0.2.1", "u@many.example")) == AuthResult::pass);

    z.add("long.example", "TXT", "v=spf1 exists:%{l}%{l}%{l}%{l}.long.example -all");
    SpfRequest r = request("192.0.2.1", "");
    r.sender = std::string(60, 'x') + "@long.example";
    CHECK(check(z, r) == AuthResult::fail);  // 240-byte label: not a name, no query, no match
}
