// Unit tests for DMARC evaluation: the From domain, record discovery (From domain, then organizational
// domain), aligned and unaligned SPF/DKIM, the subdomain policy through a PSL suffix, pct, DNS errors.
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "msgauth/dmarc.h"

using namespace mta::msgauth;

namespace {

const char* kList = "com\nuk\nco.uk\nexample\n";

struct Fixture {
    PublicSuffixList psl;
    std::map<std::string, DnsAnswer> dns;
    std::vector<std::string> asked;
    Fixture() {
        std::string err;
        REQUIRE(psl.load_text(kList, err));
    }
    void txt(const std::string& name, std::vector<std::string> records) {
        dns[name] = DnsAnswer{DnsAnswer::Status::ok, std::move(records)};
    }
    DmarcVerdict run(DmarcInput in) {
        DmarcCheck c(psl, std::move(in));
        for (int i = 0; !c.done() && i < 10; i++) {
            asked.push_back(c.query().name);
            auto it = dns.find(c.query().name);
            c.answer(it == dns.end() ? DnsAnswer{DnsAnswer::Status::nxdomain, {}} : it->second);
        }
        REQUIRE(c.done());
        return c.verdict();
    }
};

DmarcInput input(const std::string& from, AuthResult spf, const std::string& spf_domain,
                 std::vector<DmarcInput::Dkim> dkim = {}, unsigned random = 0) {
    DmarcInput in;
    in.from_domain = from;
    in.spf = spf;
    in.spf_domain = spf_domain;
    in.dkim = std::move(dkim);
    in.random_percent = random;
    return in;
}

std::optional<std::string> from_of(const std::string& headers, std::string& err) {
    HeaderSection hs;
    REQUIRE(parse_header_section(headers + "\r\n", hs, err));
    return from_domain(hs.fields, err);
}

}  // namespace

TEST_CASE("From domain: one mailbox, display names, comments, quoting") {
    std::string err;
    CHECK(*from_of("From: alice@Example.COM\r\n", err) == "example.com");
    CHECK(*from_of("From: Alice Example <alice@example.com>\r\n", err) == "example.com");
    CHECK(*from_of("From: \"Smith, John <x@evil.example>\" <j@example.org>\r\n", err) == "example.org");
    CHECK(*from_of("From: (comment <a@evil.example>) bob@example.net (another)\r\n", err) == "example.net");
    CHECK(*from_of("From: =?utf-8?q?Zo=C3=AB?=\r\n <zoe@sub.example.com.>\r\n", err) == "sub.example.com");
    CHECK(*from_of("From: <@route.example:u@example.com>\r\n", err) == "example.com");
    CHECK(*from_of("From: \"a@b\"@example.com\r\n", err) == "example.com");

    CHECK_FALSE(from_of("To: a@example.com\r\n", err));
    CHECK(err == "no From field");
    CHECK_FALSE(from_of("From: a@example.com\r\nFrom: b@example.org\r\n", err));
    CHECK(err == "more than one From field");
    CHECK_FALSE(from_of("From: a@example.com, b@example.org\r\n", err));
    CHECK(err == "From field is not a single mailbox");
    CHECK_FALSE(from_of("From: Smith, John <j@example.com>\r\n", err));
    CHECK_FALSE(from_of("From: group: a@example.com;\r\n", err));
    CHECK_FALSE(from_of("From: <a@example.com> <b@example.org>\r\n", err));
    CHECK_FALSE(from_of("From: (unbalanced a@example.com\r\n", err));
    CHECK_FALSE(from_of("From: a@[192.0.2.1]\r\n", err));
    CHECK_FALSE(from_of("From: nobody\r\n", err));
    CHECK_FALSE(from_of("From: <a@example.com\r\n", err));
    CHECK_FALSE(from_of("From: a@exa_mple.com\r\n", err));
}

TEST_CASE("aligned DKIM or SPF passes; neither fails with the published policy") {
    Fixture f;
    f.txt("_dmarc.example.com", {"v=DMARC1; p=reject"});
    DmarcVerdict v = f.run(input("example.com", AuthResult::fail, "example.com", {{AuthResult::pass, "mail.example.com"}}));
    CHECK(v.result == AuthResult::pass);
    CHECK(v.dkim_aligned);
    CHECK_FALSE(v.spf_aligned);
    CHECK(v.disposition == DmarcDisposition::none);
    CHECK(v.record_domain == "example.com");

    v = f.run(input("example.com", AuthResult::pass, "bounces.example.com"));
    CHECK(v.result == AuthResult::pass);
    CHECK(v.spf_aligned);

    v = f.run(input("example.com", AuthResult::pass, "example.net", {{AuthResult::pass, "example.net"},
                                                                     {AuthResult::fail, "example.com"}}));
    CHECK(v.result == AuthResult::fail);
    CHECK(v.policy == DmarcPolicy::reject);
    CHECK(v.disposition == DmarcDisposition::reject);
    CHECK_FALSE(v.sampled_out);
}

TEST_CASE("strict alignment needs the exact name") {
    Fixture f;
    f.txt("_dmarc.example.com", {"v=DMARC1; p=quarantine; adkim=s; aspf=s"});
    CHECK(f.run(input("example.com", AuthResult::pass, "mail.example.com")).result == AuthResult::fail);
    CHECK(f.run(input("example.com", AuthResult::none, "", {{AuthResult::pass, "mail.example.com"}})).result ==
          AuthResult::fail);
    CHECK(f.run(input("example.com", AuthResult::none, "", {{AuthResult::pass, "Example.com"}})).result ==
          AuthResult::pass);
}

TEST_CASE("lookup order and the subdomain policy through a PSL suffix") {
    Fixture f;
    f.txt("_dmarc.example.co.uk", {"v=DMARC1; p=reject; sp=quarantine"});
    DmarcVerdict v = f.run(input("news.example.co.uk", AuthResult::fail, "news.example.co.uk"));
    CHECK(f.asked == std::vector<std::string>{"_dmarc.news.example.co.uk", "_dmarc.example.co.uk"});
    CHECK(v.result == AuthResult::fail);
    CHECK(v.record_domain == "example.co.uk");
    CHECK(v.policy == DmarcPolicy::quarantine);
    CHECK(v.disposition == DmarcDisposition::quarantine);

    // The organizational domain itself gets p=; a subdomain with its own record gets that record's p=.
    CHECK(f.run(input("example.co.uk", AuthResult::fail, "x.example")).policy == DmarcPolicy::reject);
    f.txt("_dmarc.own.example.co.uk", {"some text", "v=DMARC1; p=none"});
    CHECK(f.run(input("own.example.co.uk", AuthResult::fail, "x.example")).policy == DmarcPolicy::none);

    // No sp=: subdomains inherit p=.
    f.txt("_dmarc.example.com", {"v=DMARC1; p=reject"});
    CHECK(f.run(input("a.b.example.com", AuthResult::fail, "x.example")).disposition == DmarcDisposition::reject);
}

TEST_CASE("pct: a message left out gets the next milder treatment") {
    Fixture f;
    f.txt("_dmarc.example.com", {"v=DMARC1; p=reject; pct=30"});
    DmarcVerdict v = f.run(input("example.com", AuthResult::fail, "example.com", {}, 29));
    CHECK(v.disposition == DmarcDisposition::reject);
    CHECK_FALSE(v.sampled_out);
    v = f.run(input("example.com", AuthResult::fail, "example.com", {}, 30));
    CHECK(v.disposition == DmarcDisposition::quarantine);
    CHECK(v.sampled_out);
    f.txt("_dmarc.example.com", {"v=DMARC1; p=quarantine; pct=0"});
    v = f.run(input("example.com", AuthResult::fail, "example.com", {}, 0));
    CHECK(v.disposition == DmarcDisposition::none);
    CHECK(v.policy == DmarcPolicy::quarantine);
    f.txt("_dmarc.example.com", {"v=DMARC1; p=reject"});
    CHECK(f.run(input("example.com", AuthResult::fail, "example.com", {}, 99)).disposition == DmarcDisposition::reject);
}

TEST_CASE("no record, errors, several records, broken records, unusable From") {
    Fixture f;
    DmarcVerdict v = f.run(input("mail.example.org", AuthResult::pass, "mail.example.org"));
    CHECK(v.result == AuthResult::none);
    CHECK(f.asked == std::vector<std::string>{"_dmarc.mail.example.org", "_dmarc.example.org"});
    f.asked.clear();
    CHECK(f.run(input("example.org", AuthResult::pass, "example.org")).result == AuthResult::none);
    CHECK(f.asked.size() == 1);  // already the organizational domain: no second query

    f.dns["_dmarc.example.net"] = DnsAnswer{DnsAnswer::Status::error, {}};
    CHECK(f.run(input("example.net", AuthResult::pass, "example.net")).result == AuthResult::temperror);
    f.dns["_dmarc.sub.example.net"] = DnsAnswer{DnsAnswer::Status::ok, {}};
    CHECK(f.run(input("sub.example.net", AuthResult::pass, "example.net")).result == AuthResult::temperror);

    f.txt("_dmarc.two.example", {"v=DMARC1; p=none", "v=DMARC1; p=reject"});
    CHECK(f.run(input("two.example", AuthResult::fail, "")).result == AuthResult::permerror);
    f.txt("_dmarc.bad.example", {"v=DMARC1; p=nope"});
    v = f.run(input("bad.example", AuthResult::fail, ""));
    CHECK(v.result == AuthResult::permerror);
    CHECK(v.disposition == DmarcDisposition::none);
    // A record at the subdomain stops the search, even a broken one.
    f.txt("_dmarc.x.bad.example", {"v=DMARC1; p=reject; rua=mailto:r@bad.example; sp=oops"});
    v = f.run(input("x.bad.example", AuthResult::fail, ""));
    CHECK(v.result == AuthResult::fail);
    CHECK(v.policy == DmarcPolicy::none);

    DmarcCheck c(f.psl, input("", AuthResult::pass, ""));
    CHECK(c.done());
    CHECK(c.verdict().result == AuthResult::none);
    std::string label(63, 'a');
    DmarcCheck deep(f.psl, input(label + "." + label + "." + label + "." + std::string(45, 'b') + ".example.com",
                                 AuthResult::fail, ""));
    REQUIRE_FALSE(deep.done());
    CHECK(deep.query().name == "_dmarc.example.com");  // "_dmarc." + a 253-byte name cannot exist
}
