// Unit tests for SPF record parsing: every mechanism and modifier, qualifiers, dual CIDR lengths,
// domain-spec endings, the errors that make a record a permerror, and the IP helpers.
#include <doctest/doctest.h>

#include <string>

#include "msgauth/spf_record.h"

using namespace mta::msgauth;

namespace {

SpfRecord parse(const std::string& txt) {
    SpfRecord r;
    std::string err;
    INFO(txt, ": ", err);
    REQUIRE(parse_spf_record(txt, r, err));
    return r;
}

std::string error_of(const std::string& txt) {
    SpfRecord r;
    std::string err;
    CHECK_FALSE_MESSAGE(parse_spf_record(txt, r, err), txt);
    return err;
}

}  // namespace

TEST_CASE("record selection: v=spf1 then a space or the end") {
    CHECK(is_spf_record("v=spf1"));
    CHECK(is_spf_record("V=SPF1 -all"));
    CHECK_FALSE(is_spf_record("v=spf10 -all"));
    CHECK_FALSE(is_spf_record("v=spf1\t-all"));
    CHECK_FALSE(is_spf_record(" v=spf1 -all"));
    CHECK_FALSE(is_spf_record("spf2.0/pra -all"));
}

TEST_CASE("every mechanism, qualifier and modifier") {
    SpfRecord r = parse(
        "v=spf1 +all -include:_spf.example.com ~a ?a:mail.example.com/24//64 mx mx:%{d}//48 ptr ptr:example.org "
        "ip4:192.0.2.0/24 ip6:2001:db8::/32 exists:%{ir}.%{v}._spf.%{d} IP4:198.51.100.1 redirect=_spf.example.net "
        "exp=explain._spf.%{d} unknown-mod=%{l}x  ");
    REQUIRE(r.directives.size() == 12);
    CHECK(r.directives[0].mechanism == SpfMechanism::all);
    CHECK(r.directives[0].qualifier == SpfQualifier::pass);
    CHECK(r.directives[1].mechanism == SpfMechanism::include);
    CHECK(r.directives[1].qualifier == SpfQualifier::fail);
    CHECK(r.directives[1].domain_spec == "_spf.example.com");
    CHECK(r.directives[2].mechanism == SpfMechanism::a);
    CHECK(r.directives[2].qualifier == SpfQualifier::softfail);
    CHECK(r.directives[2].domain_spec.empty());
    CHECK(r.directives[3].qualifier == SpfQualifier::neutral);
    CHECK(r.directives[3].domain_spec == "mail.example.com");
    CHECK(r.directives[3].cidr4 == 24);
    CHECK(r.directives[3].cidr6 == 64);
    CHECK(r.directives[4].mechanism == SpfMechanism::mx);
    CHECK(r.directives[5].domain_spec == "%{d}");
    CHECK(r.directives[5].cidr4 == 32);
    CHECK(r.directives[5].cidr6 == 48);
    CHECK(r.directives[6].mechanism == SpfMechanism::ptr);
    CHECK(r.directives[7].domain_spec == "example.org");
    CHECK(r.directives[8].mechanism == SpfMechanism::ip4);
    CHECK(r.directives[8].cidr4 == 24);
    CHECK(ip_to_text(r.directives[8].network) == "192.0.2.0");
    CHECK(r.directives[9].mechanism == SpfMechanism::ip6);
    CHECK(r.directives[9].cidr6 == 32);
    CHECK(r.directives[10].mechanism == SpfMechanism::exists);
    CHECK(r.directives[11].text == "IP4:198.51.100.1");
    CHECK(r.directives[11].cidr4 == 32);
    CHECK(*r.redirect == "_spf.example.net");
    CHECK(*r.exp == "explain._spf.%{d}");
    CHECK(parse("v=spf1").directives.empty());
    CHECK(parse("v=spf1 a/0 ip4:0.0.0.0/0 ip6:::/0 moo=").directives.size() == 3);
    CHECK(parse("v=spf1 mx:%%%_/.Clara.de/27").directives[0].cidr4 == 27);
    CHECK(parse("v=spf1 a:trailing.example.").directives[0].domain_spec == "trailing.example.");
    CHECK(parse("v=spf1 include:a.x-y").directives.size() == 1);
    CHECK(parse("v=spf1 ip6:::ffff:192.0.2.1").directives[0].network.v6);
}

TEST_CASE("errors that make the whole record a permerror") {
    CHECK(error_of("v=spf1 foo -all").starts_with("unknown mechanism"));
    CHECK(error_of("v=spf1 =a").starts_with("unknown mechanism"));
    CHECK(error_of("v=spf1 -all:3030").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 include").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 include:").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 exists").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 a:foo").starts_with("bad mechanism"));          // no top label
    CHECK(error_of("v=spf1 a:example.123").starts_with("bad mechanism"));  // numeric top label
    CHECK(error_of("v=spf1 a:example.com:8080").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 a/33").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 a//129").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 a/024").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 ptr/24").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 ip4:192.0.2.300").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 ip4:1.2.03.4").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 ip4:1.2.3.4/33").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 ip4:1.2.3.4//64").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 ip4:2001:db8::1").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 ip6:192.0.2.1").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 ip6:2001:db8::/129").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 ip6:2001:db8:zzzz::").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 exists:%{x}.example.com").starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 exists:%{c}.example.com").starts_with("bad mechanism"));  // exp-only letter
    CHECK(error_of("v=spf1 redirect=a.example redirect=b.example") == "redirect= appears twice");
    CHECK(error_of("v=spf1 exp=a.example exp=b.example") == "exp= appears twice");
    CHECK(error_of("v=spf1 redirect=") == "bad redirect= domain");
    CHECK(error_of("v=spf1 moo=%{") == "bad modifier moo=%{");
    CHECK(error_of("v=spf1 a:mail.example.com,") .starts_with("bad mechanism"));
    CHECK(error_of("v=spf1 -all\t") == "non-printable or non-ASCII byte in SPF record");
    CHECK(error_of("v=spf1 a:caf\xc3\xa9.example") == "non-printable or non-ASCII byte in SPF record");
    CHECK(error_of("v=spf1 " + std::string(kMaxSpfRecordBytes, 'a')) == "SPF record too long");
    CHECK(error_of("v=spf2 -all") == "not an SPF record");
}

TEST_CASE("IP addresses: strict IPv4, IPv6, mapped IPv4, networks, reverse names") {
    IpAddress ip, net;
    CHECK(parse_ip("192.0.2.1", ip));
    CHECK_FALSE(ip.v6);
    CHECK(ip_to_text(ip) == "192.0.2.1");
    for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "01.2.3.4", "256.1.1.1", "1..2.3", "1.2.3.4 ", "a.b.c.d", ":::"})
        CHECK_FALSE_MESSAGE(parse_ip(bad, ip), bad);
    CHECK(parse_ip("0.0.0.0", ip));
    REQUIRE(parse_ip("::ffff:192.0.2.1", ip));
    CHECK_FALSE(ip.v6);
    CHECK(ip_to_text(ip) == "192.0.2.1");
    REQUIRE(parse_ip("::ffff:192.0.2.1", ip, false));
    CHECK(ip.v6);
    REQUIRE(parse_ip("2001:DB8::1", ip));
    CHECK(ip_to_text(ip) == "2001:db8::1");

    REQUIRE(parse_ip("192.0.2.77", ip));
    REQUIRE(parse_ip("192.0.2.0", net));
    CHECK(ip_in_network(ip, net, 24));
    CHECK(ip_in_network(ip, net, 25));
    CHECK_FALSE(ip_in_network(ip, net, 26));
    CHECK_FALSE(ip_in_network(ip, net, 32));
    CHECK(ip_in_network(ip, net, 0));
    CHECK_FALSE(ip_in_network(ip, net, 33));
    IpAddress six;
    REQUIRE(parse_ip("2001:db8::1", six));
    CHECK_FALSE(ip_in_network(six, net, 0));  // families never match
    CHECK(reverse_name(ip) == "77.2.0.192.in-addr.arpa");
    CHECK(reverse_name(six) == "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
}
