// Unit tests for Authentication-Results and Received-SPF text (layout, quoting of hostile values) and for
// recognizing incoming Authentication-Results that claim our authserv-id.
#include <doctest/doctest.h>

#include <string>

#include "msgauth/auth_results.h"

using namespace mta::msgauth;

namespace {

DkimVerdict pass_verdict() {
    DkimVerdict v;
    v.result = AuthResult::pass;
    v.domain = "example.com";
    v.selector = "sel";
    v.identity = "@example.com";
    v.algorithm = "rsa-sha256";
    v.b_prefix = "AbC+/12=";
    return v;
}

}  // namespace

TEST_CASE("Authentication-Results: one method per line, RFC 8601 properties") {
    DmarcVerdict dm;
    dm.result = AuthResult::fail;
    dm.policy = DmarcPolicy::reject;
    dm.disposition = DmarcDisposition::quarantine;
    dm.sampled_out = true;
    std::string h = authentication_results(
        "mx.example.org", {dkim_method(pass_verdict()), spf_method(AuthResult::softfail, SpfIdentity::mailfrom,
                                                                   "user@example.com"),
                           dmarc_method(dm, "example.com")});
    CHECK(h ==
          "Authentication-Results: mx.example.org;\r\n"
          "\tdkim=pass header.d=example.com header.i=@example.com header.s=sel\r\n"
          "\theader.a=rsa-sha256 header.b=\"AbC+/12=\";\r\n"
          "\tspf=softfail smtp.mailfrom=user@example.com;\r\n"
          "\tdmarc=fail (p=reject dis=quarantine pct) header.from=example.com\r\n");
    CHECK(authentication_results("mx.example.org", {}) == "Authentication-Results: mx.example.org; none\r\n");
    CHECK(authentication_results("mx.example.org", {spf_method(AuthResult::none, SpfIdentity::helo, "helo.example")}) ==
          "Authentication-Results: mx.example.org;\r\n\tspf=none smtp.helo=helo.example\r\n");
}

TEST_CASE("Authentication-Results: reasons, comments and hostile values are quoted") {
    DkimVerdict v = pass_verdict();
    v.result = AuthResult::permerror;
    v.reason = "bad signature: \"quoted\" \\ and\r\nCRLF";
    v.identity = "we ird\"@example.com";
    v.body_length_limited = true;
    std::string h = authentication_results("mx (evil) id", {dkim_method(v)});
    CHECK(h.starts_with("Authentication-Results: \"mx (evil) id\";\r\n\tdkim=permerror"));
    CHECK(h.find("(l= leaves part of the body unsigned)") != std::string::npos);
    CHECK(h.find("reason=\"bad signature: \\\"quoted\\\" \\\\ and  CRLF\"") != std::string::npos);
    CHECK(h.find("header.i=\"we ird\\\"@example.com\"") != std::string::npos);
    // No bare CR or LF anywhere but the folds, and no line over 998.
    for (std::size_t p = h.find('\n'); p != std::string::npos; p = h.find('\n', p + 1)) CHECK(h[p - 1] == '\r');
    v.reason = std::string(5000, 'x');
    h = authentication_results("mx.example.org", {dkim_method(v)});
    for (std::size_t start = 0, end; (end = h.find("\r\n", start)) != std::string::npos; start = end + 2)
        CHECK(end - start < 998);
    DmarcVerdict none;
    none.reason = "no DMARC record";
    CHECK(authentication_results("mx", {dmarc_method(none, "")}) ==
          "Authentication-Results: mx;\r\n\tdmarc=none reason=\"no DMARC record\"\r\n");
}

TEST_CASE("Received-SPF: the RFC 7208 9.1 shape, IPv6 and the null sender quoted") {
    ReceivedSpf r;
    r.result = AuthResult::pass;
    r.receiver = "mybox.example.org";
    REQUIRE(parse_ip("192.0.2.1", r.client_ip));
    r.envelope_from = "myname@example.com";
    r.sender = "myname@example.com";
    r.helo = "foo.example.com";
    r.mechanism = "ip4:192.0.2.0/24";
    CHECK(received_spf(r) ==
          "Received-SPF: pass (mybox.example.org: domain of myname@example.com designates\r\n"
          "\t192.0.2.1 as permitted sender) receiver=mybox.example.org;\r\n"
          "\tclient-ip=192.0.2.1; envelope-from=\"myname@example.com\";\r\n"
          "\thelo=foo.example.com; identity=mailfrom; mechanism=\"ip4:192.0.2.0/24\"\r\n");

    r.result = AuthResult::permerror;
    REQUIRE(parse_ip("2001:db8::1", r.client_ip));
    r.envelope_from = "";
    r.sender = "postmaster@foo.example.com";
    r.mechanism = "";
    r.problem = "unknown mechanism foo";
    std::string h = received_spf(r);
    CHECK(h.starts_with("Received-SPF: permerror (mybox.example.org: permanent error in processing\r\n"
                        "\tdomain of postmaster@foo.example.com) "));
    CHECK(h.find("client-ip=\"2001:db8::1\";") != std::string::npos);
    CHECK(h.find("envelope-from=\"\";") != std::string::npos);
    CHECK(h.find("problem=\"unknown mechanism foo\"") != std::string::npos);
    CHECK(h.find("mechanism=") == std::string::npos);
    r.helo = "evil)(\"host";
    h = received_spf(r);
    CHECK(h.find("helo=\"evil)(\\\"host\"") != std::string::npos);
}

TEST_CASE("recognizing Authentication-Results that claim our authserv-id") {
    const std::string ours = "mx.example.org";
    for (const char* v : {" mx.example.org; spf=pass smtp.mailfrom=a@b", "MX.Example.ORG; none",
                          " (forged) mx.example.org 1; dkim=pass", "\"mx.example.org\"; dkim=pass",
                          " mx.example.org.; none", "\r\n\tmx.example.org;\r\n\tdkim=pass", "mx.example.org(c); x",
                          " ((nested) \\) comment) mx.example.org; x", "mx.example.org"}) {
        CHECK_MESSAGE(claims_authserv_id(v, ours), v);
    }
    for (const char* v : {" mx.example.org.evil; spf=pass", " other.example; dkim=pass header.d=mx.example.org",
                          "", "   ", " (unterminated mx.example.org; x", "\"mx.example.org; x", " mx.example.or; x",
                          " (mx.example.org) other.example; x"}) {
        CHECK_FALSE_MESSAGE(claims_authserv_id(v, ours), v);
    }
    HeaderSection hs;
    std::string err;
    REQUIRE(parse_header_section("Authentication-Results: other.example; none\r\n"
                                 "authentication-results: MX.example.org; dkim=pass\r\n"
                                 "Subject: mx.example.org;\r\n"
                                 "Authentication-Results:\r\n mx.example.org;\r\n spf=pass\r\n\r\n",
                                 hs, err));
    CHECK(forged_auth_results(hs.fields, ours) == std::vector<std::size_t>{1, 3});
}
