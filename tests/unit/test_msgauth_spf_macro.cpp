// Unit tests for SPF macros: the RFC 7208 §7.4 examples (IPv4 and IPv6), URL escaping, exp-only
// letters, %{p} deferral, syntax errors and the bound on expansion; query-name truncation (§7.3).
#include <doctest/doctest.h>

#include <string>

#include "msgauth/spf_macro.h"

using namespace mta::msgauth;

namespace {

SpfMacroContext example_ctx(const char* ip) {
    SpfMacroContext c;
    c.sender = "strong-bad@email.example.com";
    c.local_part = "strong-bad";
    c.sender_domain = "email.example.com";
    c.domain = "email.example.com";
    REQUIRE(parse_ip(ip, c.ip));
    c.helo = "mx.example.org";
    c.receiver = "mx.receiver.example";
    c.now = 1234567890;
    return c;
}

std::string expand(const std::string& s, const SpfMacroContext& c, MacroKind k = MacroKind::domain) {
    std::string out;
    REQUIRE(expand_macros(s, c, k, out) == MacroStatus::ok);
    return out;
}

}  // namespace

TEST_CASE("RFC 7208 7.4 examples") {
    const SpfMacroContext c = example_ctx("192.0.2.3");
    CHECK(expand("%{s}", c) == "strong-bad@email.example.com");
    CHECK(expand("%{o}", c) == "email.example.com");
    CHECK(expand("%{d}", c) == "email.example.com");
    CHECK(expand("%{d4}", c) == "email.example.com");
    CHECK(expand("%{d3}", c) == "email.example.com");
    CHECK(expand("%{d2}", c) == "example.com");
    CHECK(expand("%{d1}", c) == "com");
    CHECK(expand("%{dr}", c) == "com.example.email");
    CHECK(expand("%{d2r}", c) == "example.email");
    CHECK(expand("%{l}", c) == "strong-bad");
    CHECK(expand("%{l-}", c) == "strong.bad");
    CHECK(expand("%{lr}", c) == "strong-bad");
    CHECK(expand("%{lr-}", c) == "bad.strong");
    CHECK(expand("%{l1r-}", c) == "strong");
    CHECK(expand("%{ir}.%{v}._spf.%{d2}", c) == "3.2.0.192.in-addr._spf.example.com");
    CHECK(expand("%{lr-}.lp._spf.%{d2}", c) == "bad.strong.lp._spf.example.com");
    CHECK(expand("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", c) == "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
    CHECK(expand("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", c) == "3.2.0.192.in-addr.strong.lp._spf.example.com");
    CHECK(expand("%{d2}.trusted-domains.example.net", c) == "example.com.trusted-domains.example.net");

    const SpfMacroContext six = example_ctx("2001:db8::cb01");
    CHECK(expand("%{ir}.%{v}._spf.%{d2}", six) ==
          "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
}

TEST_CASE("escapes, upper case, delimiters, h, exp-only letters") {
    const SpfMacroContext c = example_ctx("192.0.2.3");
    CHECK(expand("%%%_%-", c) == "% %20");
    CHECK(expand("%{S}", c) == "strong-bad%40email.example.com");
    CHECK(expand("%{L2r-}", c) == "bad.strong");
    CHECK(expand("%{s2.}", c) == "example.com");
    CHECK(expand("%{l=}", c) == "strong-bad");
    CHECK(expand("%{h}", c) == "mx.example.org");
    CHECK(expand("%{d200}", c) == "email.example.com");
    std::string out;
    CHECK(expand_macros("%{c}", c, MacroKind::domain, out) == MacroStatus::syntax_error);
    CHECK(expand_macros("%{r}", c, MacroKind::domain, out) == MacroStatus::syntax_error);
    CHECK(expand_macros("%{t}", c, MacroKind::domain, out) == MacroStatus::syntax_error);
    CHECK(expand("%{c} via %{r} at %{t}", c, MacroKind::exp) == "192.0.2.3 via mx.receiver.example at 1234567890");
    CHECK(expand("%{c}", example_ctx("2001:db8::cb01"), MacroKind::exp) == "2001:db8::cb01");
    CHECK(expand_macros("a b", c, MacroKind::domain, out) == MacroStatus::syntax_error);  // spaces: exp only
}

TEST_CASE("%{p} waits for the validated name, then uses it or 'unknown'") {
    SpfMacroContext c = example_ctx("192.0.2.3");
    std::string out;
    CHECK(expand_macros("%{p}.x.example", c, MacroKind::domain, out) == MacroStatus::needs_ptr);
    CHECK(expand_macros("%{d}.x.example", c, MacroKind::domain, out) == MacroStatus::ok);
    const std::string name = "mx.example.org", unknown = "unknown";
    c.validated_name = &name;
    CHECK(expand("%{p2}.trusted.example", c) == "example.org.trusted.example");
    c.validated_name = &unknown;
    CHECK(expand("%{p}", c) == "unknown");
}

TEST_CASE("syntax errors") {
    for (const char* bad : {"%", "%x", "%{", "%{d", "%{x}", "%{d0}", "%{d1234}", "%{dx}", "%{d2r2}", "%{d;}",
                            "a\x01", "\xc3\xa9"}) {
        CHECK_FALSE_MESSAGE(valid_macro_string(bad, MacroKind::exp), bad);
    }
    CHECK(valid_macro_string("", MacroKind::domain));
    CHECK(valid_macro_string("%{d128r.-+,/_=}", MacroKind::domain));
    CHECK(valid_macro_string("a b %{c}", MacroKind::exp));
    CHECK_FALSE(valid_macro_string("a b", MacroKind::domain));
}

TEST_CASE("expansion is bounded") {
    SpfMacroContext c = example_ctx("192.0.2.3");
    std::string big(6000, 'a');
    c.sender = big;
    std::string out;
    CHECK(expand_macros("%{s}", c, MacroKind::domain, out) == MacroStatus::ok);
    CHECK(expand_macros("%{s}%{s}", c, MacroKind::domain, out) == MacroStatus::syntax_error);
    CHECK(expand_macros("%{S}", c, MacroKind::domain, out) == MacroStatus::ok);
    const std::string ats(3000, '@');
    c.sender = ats;
    CHECK(expand_macros("%{S}", c, MacroKind::domain, out) == MacroStatus::syntax_error);  // 9000 escaped bytes
}

TEST_CASE("query names: trailing dot, case, left truncation to 253, unusable names") {
    CHECK(spf_query_name("Mail.Example.COM.") == "mail.example.com");
    CHECK(spf_query_name("_spf.example") == "_spf.example");
    std::string labels;
    for (int i = 0; i < 40; i++) labels += "label" + std::to_string(i) + ".";
    std::string q = spf_query_name(labels + "example.com");
    CHECK(q.size() <= 253);
    CHECK(q.ends_with(".example.com"));
    CHECK((labels + "example.com").ends_with(q));
    CHECK(spf_query_name("").empty());
    CHECK(spf_query_name("a..b").empty());
    CHECK(spf_query_name("a%2Bb.example").empty());
    CHECK(spf_query_name(std::string(64, 'a') + ".example").empty());
    CHECK(spf_query_name(std::string(300, 'a')).empty());
}
