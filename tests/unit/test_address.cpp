// Unit tests for mta::addr: RFC 5321 path grammar, limits, hostile bytes, SMTPUTF8 and xtext.
#include <doctest/doctest.h>

#include <string>

#include "common/address.h"

using namespace mta::addr;
using namespace std::string_literals;

namespace {

const PathOptions kRcpt{};
const PathOptions kMail{.allow_null = true};
const PathOptions kUtf8{.smtputf8 = true};
const PathOptions kPostmaster{.allow_postmaster = true};

PathResult p(std::string_view s, const PathOptions& o = kRcpt) { return parse_path(s, o); }

bool rejects(std::string_view s, const PathOptions& o = kRcpt) {
    PathResult r = parse_path(s, o);
    return !r.ok && !r.error.empty();
}

}  // namespace

TEST_CASE("simple mailbox") {
    auto r = p("<User@Example.COM>");
    REQUIRE(r.ok);
    CHECK(r.mailbox.local == "User");  // local part is case-sensitive: kept as written
    CHECK(r.mailbox.domain == "example.com");
    CHECK_FALSE(r.mailbox.quoted);
    CHECK_FALSE(r.mailbox.literal);
    CHECK_FALSE(r.mailbox.null_path);
    CHECK_FALSE(r.mailbox.utf8);
    CHECK(r.rest.empty());
    CHECK(r.mailbox.str() == "User@example.com");
}

TEST_CASE("dot-string and atext specials") {
    auto r = p("<first.last+tag=x{y}~!#$&'*/?^_`|@a-b.example>");
    REQUIRE(r.ok);
    CHECK(r.mailbox.local == "first.last+tag=x{y}~!#$&'*/?^_`|");
    CHECK(rejects("<.a@b.c>"));
    CHECK(rejects("<a.@b.c>"));
    CHECK(rejects("<a..b@b.c>"));
    CHECK(rejects("<a b@b.c>"));
    CHECK(rejects("<a(b)@b.c>"));
    CHECK(rejects("<a,b@b.c>"));
}

TEST_CASE("quoted local part") {
    auto r = p(R"(<"john \"q\" smith"@example.com>)");
    REQUIRE(r.ok);
    CHECK(r.mailbox.quoted);
    CHECK(r.mailbox.local == R"(john "q" smith)");
    CHECK(r.mailbox.str() == R"("john \"q\" smith"@example.com)");

    auto bs = p(R"(<"a\\b"@x.y>)");
    REQUIRE(bs.ok);
    CHECK(bs.mailbox.local == R"(a\b)");
    CHECK(bs.mailbox.str() == R"("a\\b"@x.y)");

    // Unneeded quoting is dropped by str(); needless escapes are decoded.
    auto plain = p(R"(<"j\oe"@x.y>)");
    REQUIRE(plain.ok);
    CHECK(plain.mailbox.local == "joe");
    CHECK(plain.mailbox.quoted);
    CHECK(plain.mailbox.str() == "joe@x.y");

    auto gt = p(R"(<"a>b"@x.y> SIZE=1)");
    REQUIRE(gt.ok);
    CHECK(gt.mailbox.local == "a>b");
    CHECK(gt.rest == "SIZE=1");

    CHECK(rejects(R"(<""@x.y>)"));         // empty local part
    CHECK(rejects(R"(<"abc@x.y>)"));       // unterminated quote
    CHECK(rejects(R"(<"a"b"@x.y>)"));      // junk after closing quote
    CHECK(rejects("<\"a\\\x01\"@x.y>"));  // quoted-pair may not escape a control
}

TEST_CASE("source route is accepted and discarded") {
    auto r = p("<@a.example,@[1.2.3.4],@b.example:user@dest.example>");
    REQUIRE(r.ok);
    CHECK(r.mailbox.local == "user");
    CHECK(r.mailbox.domain == "dest.example");
    CHECK(r.mailbox.str() == "user@dest.example");

    CHECK(p("<@[IPv6:::1]:u@d.e>").ok);  // ':' inside a literal does not end the route
    CHECK(rejects("<@a.example:>"));
    CHECK(rejects("<@:u@d.e>"));
    CHECK(rejects("<@a,b:u@d.e>"));
    CHECK(rejects("<@a.,@b:u@d.e>"));
    CHECK(rejects("<@a u@d.e>"));
    CHECK(rejects("<@a.example>"));
    CHECK(rejects("<@a:Postmaster>", kPostmaster));
}

TEST_CASE("null path") {
    auto r = p("<>", kMail);
    REQUIRE(r.ok);
    CHECK(r.mailbox.null_path);
    CHECK(r.mailbox.str().empty());
    CHECK(p("<> SIZE=100", kMail).rest == "SIZE=100");
    CHECK(rejects("<>"));
    CHECK(p("<>").enhanced == "5.1.3"s);
    CHECK(rejects("< >", kMail));
}

TEST_CASE("postmaster without domain") {
    auto r = p("<postMASTER>", kPostmaster);
    REQUIRE(r.ok);
    CHECK(r.mailbox.local == "Postmaster");
    CHECK(r.mailbox.domain.empty());
    CHECK(r.mailbox.str() == "Postmaster");
    CHECK(rejects("<Postmaster>"));
    CHECK(rejects("<\"Postmaster\">", kPostmaster));
    CHECK(rejects("<webmaster>", kPostmaster));
    CHECK(p("<Postmaster@Example.org>").mailbox.domain == "example.org");
}

TEST_CASE("brackets and surrounding text") {
    CHECK(rejects("user@example.com"));
    CHECK(rejects(""));
    CHECK(rejects("<"));
    CHECK(rejects("<user@example.com"));
    CHECK(rejects("user@example.com>"));
    CHECK(rejects("<<a@b.c>>"));
    CHECK(rejects("<a@b.c>>"));
    CHECK(rejects("< a@b.c>"));
    CHECK(rejects("<a@b.c >"));
    CHECK(rejects("<a@b.c>x"));
    CHECK(rejects("<a@b.c>=SIZE"));
    CHECK(p("  <a@b.c>").ok);  // spaces before '<' tolerated
    CHECK(rejects("\t<a@b.c>"));
    CHECK(rejects("<a@>"));
    CHECK(rejects("<@b.c>"));
    CHECK(rejects("<a>"));
}

TEST_CASE("ESMTP parameters in rest") {
    auto r = p("<a@b.c> SIZE=10 BODY=8BITMIME", kMail);
    REQUIRE(r.ok);
    CHECK(r.rest == "SIZE=10 BODY=8BITMIME");
    CHECK(p("<a@b.c>    NOTIFY=NEVER").rest == "NOTIFY=NEVER");
    auto trail = p("<a@b.c>   ");
    REQUIRE(trail.ok);
    CHECK(trail.rest.empty());
    auto bad = p("<a@b.c> SIZE=1\r\n");
    CHECK_FALSE(bad.ok);
    CHECK(bad.enhanced == "5.5.4"s);
}

TEST_CASE("length limits") {
    const std::string l64(64, 'a'), l65(65, 'a');
    CHECK(p("<" + l64 + "@x.y>").ok);
    auto r = p("<" + l65 + "@x.y>");
    CHECK_FALSE(r.ok);
    CHECK(r.error == "Address too long");
    CHECK(r.enhanced == "5.1.3"s);
    // Quoted form counts as written, quotes included.
    CHECK(p("<\"" + std::string(62, 'a') + "\"@x.y>").ok);
    CHECK(rejects("<\"" + std::string(63, 'a') + "\"@x.y>"));

    const std::string lab63(63, 'b'), lab64(64, 'b');
    CHECK(valid_domain(lab63 + ".com"));
    CHECK_FALSE(valid_domain(lab64 + ".com"));
    CHECK(p("<a@" + lab63 + ".com>").ok);
    CHECK(rejects("<a@" + lab64 + ".com>"));

    // 4 labels of 63 + 3 dots = 255.
    std::string d255 = lab63 + "." + lab63 + "." + lab63 + "." + lab63;
    REQUIRE(d255.size() == 255);
    CHECK(valid_domain(d255));
    CHECK_FALSE(valid_domain(d255 + "x"));
    std::string d256 = lab63 + "." + lab63 + "." + lab63 + "." + std::string(62, 'b') + ".a";
    REQUIRE(d256.size() == 256);
    CHECK_FALSE(valid_domain(d256));

    // Whole path: "<" + local + "@" + domain + ">" <= 256.
    std::string dom = lab63 + "." + lab63 + "." + lab63 + "." + std::string(56, 'b');  // 248
    REQUIRE(dom.size() == 248);
    CHECK(p("<" + std::string(5, 'a') + "@" + dom + ">").ok);   // 256
    auto big = p("<" + std::string(6, 'a') + "@" + dom + ">");  // 257
    CHECK_FALSE(big.ok);
    CHECK(big.error == "Address too long");
}

TEST_CASE("domain syntax") {
    CHECK(valid_domain("example.com"));
    CHECK(valid_domain("a"));
    CHECK(valid_domain("xn--bcher-kva.example"));
    CHECK(valid_domain("a-b.c-d"));
    CHECK_FALSE(valid_domain(""));
    CHECK_FALSE(valid_domain("-a.com"));
    CHECK_FALSE(valid_domain("a-.com"));
    CHECK_FALSE(valid_domain("a.-com"));
    CHECK_FALSE(valid_domain("a.com-"));
    CHECK_FALSE(valid_domain("a..com"));
    CHECK_FALSE(valid_domain(".a.com"));
    CHECK_FALSE(valid_domain("a.com."));
    CHECK_FALSE(valid_domain("a_b.com"));
    CHECK_FALSE(valid_domain("a b.com"));
    CHECK_FALSE(valid_domain("a@b.com"));
    CHECK_FALSE(valid_domain("a.com\0"s));
    CHECK(rejects("<a@example.com.>"));
    CHECK(rejects("<a@-x.com>"));
    CHECK(p("<a@MiXeD.ExAmPlE>").mailbox.domain == "mixed.example");
}

TEST_CASE("address literals") {
    auto r = p("<a@[192.0.2.1]>");
    REQUIRE(r.ok);
    CHECK(r.mailbox.literal);
    CHECK(r.mailbox.domain == "[192.0.2.1]");
    CHECK(r.mailbox.str() == "a@[192.0.2.1]");
    CHECK(valid_domain("[0.0.0.0]"));
    CHECK(valid_domain("[255.255.255.255]"));
    CHECK_FALSE(valid_domain("[256.1.1.1]"));
    CHECK_FALSE(valid_domain("[1.2.3]"));
    CHECK_FALSE(valid_domain("[1.2.3.4.5]"));
    CHECK_FALSE(valid_domain("[1.2.3.4.]"));
    CHECK_FALSE(valid_domain("[01.2.3.4]"));
    CHECK_FALSE(valid_domain("[1.2.3.4"));
    CHECK_FALSE(valid_domain("[]"));
    CHECK_FALSE(valid_domain("[ 1.2.3.4]"));
    CHECK_FALSE(valid_domain("[1234.1.1.1]"));
    CHECK(rejects("<a@[256.1.1.1]>"));

    auto v6 = p("<a@[IPv6:2001:DB8::1]>");
    REQUIRE(v6.ok);
    CHECK(v6.mailbox.domain == "[IPv6:2001:DB8::1]");  // literals are kept verbatim
    CHECK(valid_domain("[IPv6:::1]"));
    CHECK(valid_domain("[ipv6:::ffff:192.0.2.1]"));
    CHECK(valid_domain("[IPv6:1:2:3:4:5:6:7:8]"));
    CHECK_FALSE(valid_domain("[IPv6:1:2:3:4:5:6:7:8:9]"));
    CHECK_FALSE(valid_domain("[IPv6:2001:db8::g]"));
    CHECK_FALSE(valid_domain("[IPv6:1::2::3]"));
    CHECK_FALSE(valid_domain("[IPv6:]"));
    CHECK_FALSE(valid_domain("[IPv6:fe80::1%eth0]"));
    CHECK_FALSE(valid_domain("[2001:db8::1]"));     // tag is mandatory
    CHECK_FALSE(valid_domain("[IPv6:192.0.2.1]"));
    CHECK_FALSE(valid_domain("[x400:foo]"));        // General-address-literal refused
    CHECK(rejects("<a@[IPv6:1::2::3]>"));
    CHECK(rejects("<a@[1.2.3.4]x>"));
}

TEST_CASE("control characters and NUL") {
    CHECK(rejects("<a\0b@x.y>"s));
    CHECK(rejects("<a@x.y\0>"s));
    CHECK(rejects("<a\r@x.y>"));
    CHECK(rejects("<a\n@x.y>"));
    CHECK(rejects("<a@x.y>\r\nRCPT TO:<b@x.y>"));
    CHECK(rejects("<a\x1b@x.y>"));
    CHECK(rejects("<a\x7f@x.y>"));
    CHECK(rejects("<\"a\tb\"@x.y>"));
    CHECK(rejects("<\"a\\\rb\"@x.y>"));
    CHECK(rejects("<\"a\\\0b\"@x.y>"s));
    CHECK(rejects("<\0>"s, kMail));
    CHECK_FALSE(valid_domain("a\r.com"));
}

TEST_CASE("8-bit addresses and SMTPUTF8") {
    const std::string u = "<j\xc3\xb6rg@b\xc3\xbc" "cher.example>";
    auto no = p(u);
    CHECK_FALSE(no.ok);
    CHECK(no.enhanced == "5.6.7"s);
    CHECK(no.error == "Non-ASCII address requires SMTPUTF8");

    auto yes = p(u, kUtf8);
    REQUIRE(yes.ok);
    CHECK(yes.mailbox.utf8);
    CHECK(yes.mailbox.local == "j\xc3\xb6rg");
    CHECK(yes.mailbox.domain == "b\xc3\xbc" "cher.example");
    CHECK(yes.mailbox.str() == u.substr(1, u.size() - 2));

    auto q = p("<\"\xe2\x82\xac 1\"@x.y>", kUtf8);
    REQUIRE(q.ok);
    CHECK(q.mailbox.utf8);
    CHECK(q.mailbox.local == "\xe2\x82\xac 1");

    CHECK(p("<a@b.c>", kUtf8).ok);
    CHECK_FALSE(p("<a@b.c>", kUtf8).mailbox.utf8);
    CHECK(valid_domain("b\xc3\xbc" "cher.de", true));
    CHECK_FALSE(valid_domain("b\xc3\xbc" "cher.de", false));
    CHECK(rejects("<a@b\xc3\xbc" "cher.example>"));
    CHECK(p("<\xf0\x9f\x98\x80@x.y>", kUtf8).ok);  // 4-byte sequence

    // Malformed UTF-8 is refused even with SMTPUTF8.
    CHECK(rejects("<\xc0\xaf@x.y>", kUtf8));            // overlong '/'
    CHECK(rejects("<\xe0\x80\xaf@x.y>", kUtf8));        // overlong 3-byte
    CHECK(rejects("<\xed\xa0\x80@x.y>", kUtf8));        // surrogate U+D800
    CHECK(rejects("<\xf4\x90\x80\x80@x.y>", kUtf8));    // > U+10FFFF
    CHECK(rejects("<\xf5\x80\x80\x80@x.y>", kUtf8));
    CHECK(rejects("<\xc3@x.y>", kUtf8));                // truncated
    CHECK(rejects("<\x80@x.y>", kUtf8));                // lone continuation
    CHECK(rejects("<\xff@x.y>", kUtf8));
    CHECK(rejects("<a@x.y\xc3>", kUtf8));
    CHECK_FALSE(valid_domain("a\xed\xbf\xbf.de", true));
    CHECK_FALSE(valid_domain("a\xc3", true));
    CHECK_FALSE(valid_domain("[1.2.3.\xc3\xb6]", true));
}

TEST_CASE("relay tricks parse as plain local parts") {
    auto q = p("<\"user@remote\"@local.example>");
    REQUIRE(q.ok);
    CHECK(q.mailbox.quoted);
    CHECK(q.mailbox.local == "user@remote");
    CHECK(q.mailbox.domain == "local.example");
    CHECK(q.mailbox.str() == "\"user@remote\"@local.example");

    auto pct = p("<user%remote@local.example>");
    REQUIRE(pct.ok);
    CHECK(pct.mailbox.local == "user%remote");
    CHECK(pct.mailbox.domain == "local.example");

    auto bang = p("<remote!user@local.example>");
    REQUIRE(bang.ok);
    CHECK(bang.mailbox.local == "remote!user");
    CHECK(bang.mailbox.domain == "local.example");

    auto route = p("<@local.example:user@remote.example>");
    REQUIRE(route.ok);
    CHECK(route.mailbox.local == "user");
    CHECK(route.mailbox.domain == "remote.example");

    CHECK(rejects("<user@remote@local.example>"));
    CHECK(rejects("<user@remote.example,@local.example>"));
    CHECK(rejects("<\"user@remote\"@local.example@x>"));
}

TEST_CASE("str round trip re-parses to the same mailbox") {
    for (const char* s : {"<a@b.c>", R"(<"a b"@c.d>)", R"(<"a\"\\b"@c.d>)", "<\"a..b\"@c.d>",
                          "<\".a\"@c.d>", "<x@[IPv6:::1]>", "<\"user@remote\"@l.e>"}) {
        auto r = p(s);
        REQUIRE(r.ok);
        auto again = p("<" + r.mailbox.str() + ">");
        REQUIRE(again.ok);
        CHECK(again.mailbox.local == r.mailbox.local);
        CHECK(again.mailbox.domain == r.mailbox.domain);
    }
}

TEST_CASE("xtext") {
    CHECK(xtext_decode("rfc822;user+2Bfoo@example.com") == "rfc822;user+foo@example.com");
    CHECK(xtext_decode("a+3Db") == "a=b");
    CHECK(xtext_decode("a+3db") == "a=b");  // lower-case hex tolerated
    CHECK(xtext_decode("a+20b") == "a b");
    CHECK(xtext_decode("") == "");
    CHECK_FALSE(xtext_decode("+0D").has_value());
    CHECK_FALSE(xtext_decode("+0A").has_value());
    CHECK_FALSE(xtext_decode("+00").has_value());
    CHECK_FALSE(xtext_decode("+7F").has_value());
    CHECK_FALSE(xtext_decode("+80").has_value());
    CHECK_FALSE(xtext_decode("+C3+B6").has_value());
    CHECK_FALSE(xtext_decode("+4").has_value());
    CHECK_FALSE(xtext_decode("ab+").has_value());
    CHECK_FALSE(xtext_decode("+G0").has_value());
    CHECK_FALSE(xtext_decode("+-1").has_value());
    CHECK_FALSE(xtext_decode("a=b").has_value());
    CHECK_FALSE(xtext_decode("a b").has_value());
    CHECK_FALSE(xtext_decode("a\rb").has_value());
    CHECK_FALSE(xtext_decode("a\0b"s).has_value());
    CHECK_FALSE(xtext_decode("\xc3\xb6").has_value());

    CHECK(xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d");
    CHECK(xtext_encode("\r\n") == "+0D+0A");
    CHECK(xtext_encode("\xff") == "+FF");
    CHECK(xtext_encode("") == "");
    std::string all;
    for (int c = 0x20; c <= 0x7e; ++c) all += static_cast<char>(c);
    CHECK(xtext_decode(xtext_encode(all)) == all);
    CHECK(xtext_decode(xtext_encode("rfc822;\"a b\"@x.y")) == "rfc822;\"a b\"@x.y");
}

TEST_CASE("lower") {
    CHECK(lower("AbC-1.Z") == "abc-1.z");
    CHECK(lower("\xc3\x96") == "\xc3\x96");  // non-ASCII untouched
    CHECK(lower("") == "");
}

TEST_CASE("utf8_valid accepts well-formed UTF-8 and refuses the rest") {
    CHECK(mta::addr::utf8_valid("plain"));
    CHECK(mta::addr::utf8_valid("\xc3\xbc"));              // ü
    CHECK(mta::addr::utf8_valid("\xf0\x9f\x98\x80"));      // U+1F600
    CHECK_FALSE(mta::addr::utf8_valid("\xc3"));            // truncated
    CHECK_FALSE(mta::addr::utf8_valid("\xc0\xaf"));        // overlong '/'
    CHECK_FALSE(mta::addr::utf8_valid("\xed\xa0\x80"));    // surrogate
    CHECK_FALSE(mta::addr::utf8_valid("\xff"));
}
