// MTA-STS parsers and matching (common/mta_sts.cpp) and the resolver's HTTP response / cache file
// handling (resolver/mta_sts_http.cpp).
#include <doctest/doctest.h>

#include <string>

#include "common/mta_sts.h"
#include "resolver/mta_sts_http.h"

using namespace mta;
using namespace mta::resolver;

TEST_CASE("MTA-STS TXT record") {
    CHECK(sts::parse_txt("v=STSv1; id=20160831085700Z;") == "20160831085700Z");
    CHECK(sts::parse_txt("v=STSv1;id=abc") == "abc");
    CHECK(sts::parse_txt("v=STSv1 ; id=abc ; ext=val;") == "abc");
    CHECK(!sts::parse_txt("v=STSv1;"));                       // no id
    CHECK(!sts::parse_txt("v=STSv1; id=;"));
    CHECK(!sts::parse_txt("v=STSv1; id=a-b;"));               // id is ALPHA / DIGIT only
    CHECK(!sts::parse_txt("v=STSv1; id=" + std::string(33, 'a')));
    CHECK(!sts::parse_txt("v=STSv1; id=1; id=2"));
    CHECK(!sts::parse_txt("v=STSv2; id=1"));
    CHECK(!sts::parse_txt("v=STSv1x; id=1"));
    CHECK(!sts::parse_txt(" v=STSv1; id=1"));
    CHECK(!sts::parse_txt("v=STSv1; id=1; bad"));
}

TEST_CASE("MTA-STS TXT RRset: exactly one STSv1 record, others ignored") {
    std::string why;
    CHECK(sts::select_txt({"v=spf1 -all", "v=STSv1; id=7;"}, why) == "7");
    CHECK(!sts::select_txt({"v=spf1 -all"}, why));
    CHECK(why == "no v=STSv1 TXT record");
    CHECK(!sts::select_txt({"v=STSv1; id=1", "v=STSv1; id=2"}, why));
    CHECK(why == "more than one v=STSv1 TXT record");
    CHECK(!sts::select_txt({"v=STSv1; nope"}, why));
}

TEST_CASE("MTA-STS policy parsing") {
    sts::Policy p;
    std::string err;
    REQUIRE(sts::parse_policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET\r\n"
                              "max_age: 604800\r\n", p, err));
    CHECK(p.mode == sts::Mode::enforce);
    CHECK(p.max_age == 604800);
    CHECK(p.mx == std::vector<std::string>{"mail.example.com", "*.example.net"});
    // LF only, extension keys ignored, surrounding blanks trimmed
    REQUIRE(sts::parse_policy("version: STSv1\nmode:testing\nmx: a.example\nmax_age:  86400  \nfuture_key: x\n", p, err));
    CHECK(p.mode == sts::Mode::testing);
    // max_age is capped at one year
    REQUIRE(sts::parse_policy("version: STSv1\nmode: none\nmax_age: 9999999999\n", p, err));
    CHECK(p.max_age == sts::kMaxAgeCap);
    CHECK(p.mx.empty());  // mode none needs no mx

    auto bad = [&](const char* text, const char* why) {
        sts::Policy q;
        std::string e;
        CHECK_MESSAGE(!sts::parse_policy(text, q, e), text);
        CHECK_MESSAGE(e.find(why) != std::string::npos, e);
    };
    bad("mode: enforce\nmx: a.example\nmax_age: 1\n", "no version");
    bad("version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "version is not STSv1");
    bad("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx pattern");
    bad("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "unknown mode");
    bad("version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n", "duplicate mode");
    bad("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "max_age");
    bad("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n", "max_age");
    bad("version: STSv1\nmode: enforce\nmx: a.example\n", "no max_age");
    bad("version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", "bad mx pattern");
    bad("version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", "bad mx pattern");
    bad("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\ngarbage\n", "not a \"key: value\" line");
    bad("version: STSv1\nmode: enforce\nmx: a.ex\x01ample\nmax_age: 1\n", "control");
    CHECK(!sts::parse_policy(std::string(sts::kMaxPolicyBytes + 1, '\n'), p, err));
}

TEST_CASE("MTA-STS mx pattern matching (RFC 8461 §4.1)") {
    CHECK(sts::mx_matches("mail.example.com", "mail.example.com"));
    CHECK(sts::mx_matches("mail.example.com", "MAIL.Example.com."));
    CHECK(!sts::mx_matches("mail.example.com", "mx.mail.example.com"));
    CHECK(sts::mx_matches("*.example.com", "mx1.example.com"));
    CHECK(!sts::mx_matches("*.example.com", "example.com"));
    CHECK(!sts::mx_matches("*.example.com", "a.b.example.com"));  // one label only
    CHECK(!sts::mx_matches("*.example.com", "mx1.example.com.evil"));
    CHECK(!sts::mx_matches("*.example.com", ".example.com"));
    sts::Policy p;
    p.mx = {"a.example", "*.b.example"};
    CHECK(sts::policy_matches(p, "x.b.example"));
    CHECK(!sts::policy_matches(p, "c.example"));
}

TEST_CASE("MTA-STS lookup over IPC round-trips and is checked strictly") {
    sts::Lookup l;
    l.found = true;
    l.policy.mode = sts::Mode::enforce;
    l.policy.max_age = 3600;
    l.policy.mx = {"*.example.com", "mx.example.net"};
    l.id = "abc123";
    l.source = "cached";
    l.expires = 1700000000;
    sts::Lookup back;
    REQUIRE(sts::decode_lookup(sts::encode_lookup(l), back));
    CHECK(back.found);
    CHECK(back.policy.mode == sts::Mode::enforce);
    CHECK(back.policy.mx == l.policy.mx);
    CHECK(back.id == "abc123");
    CHECK(back.expires == 1700000000);
    REQUIRE(sts::decode_lookup({}, back));
    CHECK(!back.found);
    auto recs = sts::encode_lookup(l);
    recs[0] = "mode strict";
    CHECK(!sts::decode_lookup(recs, back));
    recs = sts::encode_lookup(l);
    recs.push_back("mx bad..name");
    CHECK(!sts::decode_lookup(recs, back));
    recs = sts::encode_lookup(l);
    recs[2] = "id has space";
    CHECK(!sts::decode_lookup(recs, back));
}

TEST_CASE("MTA-STS HTTP response") {
    std::string err;
    auto ok = parse_sts_http_response("HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                      "Content-Length: 5\r\n\r\nhello trailing", err);
    REQUIRE(ok);
    CHECK(*ok == "hello");
    CHECK(parse_sts_http_response("HTTP/1.1 200 OK\r\ncontent-type: TEXT/PLAIN\r\n\r\nbody", err) == "body");
    CHECK(!parse_sts_http_response("HTTP/1.1 301 Moved\r\nLocation: https://x/\r\n\r\n", err));
    CHECK(err == "HTTP status 301 (redirects are not followed)");
    CHECK(!parse_sts_http_response("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\n", err));
    CHECK(!parse_sts_http_response("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nx", err));
    CHECK(err == "Content-Type is not text/plain");
    CHECK(!parse_sts_http_response("HTTP/1.1 200 OK\r\n\r\nx", err));
    CHECK(!parse_sts_http_response("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nshort", err));
    CHECK(err == "truncated body");
    CHECK(!parse_sts_http_response("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello", err));
    CHECK(!parse_sts_http_response("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" +
                                   std::string(sts::kMaxPolicyBytes + 1, 'x'), err));
    CHECK(!parse_sts_http_response("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n", err));  // no header end
    CHECK(!parse_sts_http_response("HTTP/2 200\r\nContent-Type: text/plain\r\n\r\n", err));
    CHECK(!parse_sts_http_response("HTTP/1.1 200 OK\r\nbroken header\r\nContent-Type: text/plain\r\n\r\n", err));
}

TEST_CASE("MTA-STS cache file: round trip, validation, expiry") {
    CachedPolicy c;
    c.id = "id42";
    c.fetched = 1000;
    c.body = "version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 600\n";
    std::string err;
    REQUIRE(sts::parse_policy(c.body, c.policy, err));
    CHECK(c.expires() == 1600);  // the policy is usable while now < fetched + max_age
    CachedPolicy back;
    REQUIRE(decode_cache_file(encode_cache_file(c), back, err));
    CHECK(back.id == "id42");
    CHECK(back.fetched == 1000);
    CHECK(back.expires() == 1600);
    CHECK(back.policy.mx == std::vector<std::string>{"*.example.com"});
    std::string text = encode_cache_file(c);
    CHECK(!decode_cache_file(text.substr(0, text.size() - 12), back, err));  // truncated policy
    CHECK(!decode_cache_file("mta-sts-cache 2\n" + text.substr(16), back, err));
    std::string bad_id = text;
    bad_id.replace(bad_id.find("id42"), 4, "i/42");
    CHECK(!decode_cache_file(bad_id, back, err));
    CHECK(!decode_cache_file("", back, err));
}
