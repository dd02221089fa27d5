// Unit tests for DKIM tag lists, DKIM-Signature values and key records: the grammar, every required
// tag, the semantic checks (h= has From, i= within d=, x= after t=), base64 with folding, and the bounds.
#include <doctest/doctest.h>

#include <string>

#include "msgauth/dkim_tags.h"

using namespace mta::msgauth;

namespace {

const std::string kBase = "v=1; a=rsa-sha256; d=example.com; s=sel; h=from:to; bh=AAAA; b=QUJD";

bool sig_ok(const std::string& v, DkimSignature& s, std::string& err) { return parse_dkim_signature(v, s, err); }

std::string sig_error(const std::string& v) {
    DkimSignature s;
    std::string err;
    CHECK_FALSE(parse_dkim_signature(v, s, err));
    return err;
}

}  // namespace

TEST_CASE("tag list: whitespace, folding, trailing semicolon and raw value spans") {
    std::vector<Tag> t;
    std::string err;
    std::string in = " a = 1 ;\r\n\tb=two  words ;c=;d =x;";
    REQUIRE(parse_tag_list(in, t, err));
    REQUIRE(t.size() == 4);
    CHECK(t[0].name == "a");
    CHECK(t[0].value == "1");
    CHECK(t[1].value == "two  words");
    CHECK(t[2].value.empty());
    CHECK(t[3].name == "d");
    CHECK(in.substr(t[1].raw_begin, t[1].raw_end - t[1].raw_begin) == "two  words ");
    CHECK(parse_tag_list("", t, err));
    CHECK(t.empty());
    CHECK(parse_tag_list("  ;", t, err) == false);  // an empty tag-spec is not a tag
}

TEST_CASE("tag list: errors") {
    std::vector<Tag> t;
    std::string err;
    CHECK_FALSE(parse_tag_list("a=1; a=2", t, err));
    CHECK(err == "duplicate tag a");
    CHECK_FALSE(parse_tag_list("a=1;; b=2", t, err));
    CHECK_FALSE(parse_tag_list("1a=1", t, err));
    CHECK_FALSE(parse_tag_list("a 1", t, err));
    CHECK_FALSE(parse_tag_list(std::string("a=x\0y", 5), t, err));
    CHECK_FALSE(parse_tag_list("a=\x01", t, err));
    CHECK_FALSE(parse_tag_list("a-b=1", t, err));
    std::string many;
    for (int i = 0; i < 65; i++) many += "t" + std::to_string(i) + "=x;";
    CHECK_FALSE(parse_tag_list(many, t, err));
    CHECK(err == "too many tags");
    CHECK_FALSE(parse_tag_list("h=" + std::string(1 << 20, 'a'), t, err));
    CHECK(err == "tag list too long");
}

TEST_CASE("base64: folding whitespace, padding and garbage") {
    std::string out;
    CHECK(base64_decode("QU JD\r\n\tRA==", out));
    CHECK(out == "ABCD");
    CHECK(base64_decode("", out));
    CHECK(out.empty());
    CHECK(base64_decode("QUI=", out));
    CHECK(out == "AB");
    CHECK_FALSE(base64_decode("QUI", out));      // missing padding
    CHECK_FALSE(base64_decode("QU=I", out));     // data after padding
    CHECK_FALSE(base64_decode("QUJD=", out));    // padding on a full group
    CHECK_FALSE(base64_decode("Q", out));
    CHECK_FALSE(base64_decode("QU*D", out));
    CHECK_FALSE(base64_decode("QUJDR===", out));
    for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x80", 3)}) {
        REQUIRE(base64_decode(base64_encode(s), out));
        CHECK(out == s);
    }
    CHECK(base64_encode("ABCD") == "QUJDRA==");
}

TEST_CASE("DKIM-Signature: a minimal valid value and its defaults") {
    DkimSignature s;
    std::string err;
    REQUIRE(sig_ok(kBase, s, err));
    CHECK(s.algorithm == DkimAlgorithm::rsa_sha256);
    CHECK(s.header_canon == DkimCanon::simple);
    CHECK(s.body_canon == DkimCanon::simple);
    CHECK(s.domain == "example.com");
    CHECK(s.selector == "sel");
    CHECK(s.signed_headers == std::vector<std::string>{"from", "to"});
    CHECK(s.body_hash == std::string(3, '\0'));
    CHECK(s.signature == "ABC");
    CHECK(s.identity == "@example.com");
    CHECK_FALSE(s.body_length);
    CHECK(kBase.substr(s.b_raw_begin, s.b_raw_end - s.b_raw_begin) == "QUJD");
}

TEST_CASE("DKIM-Signature: every tag, case folding and FWS inside h= and b=") {
    DkimSignature s;
    std::string err;
    std::string v =
        "v=1; a=ED25519-SHA256; c=relaxed/relaxed; d=Mail.Example.COM; s=Sel_1;\r\n"
        " h=From : Subject\r\n\t:to; i=user@sub.mail.example.com; l=100; t=1000; x=2000; q=dns/txt;\r\n"
        " z=From:x|To:y; unknown=whatever; bh=AAAA; b=QU\r\n JD";
    REQUIRE(sig_ok(v, s, err));
    CHECK(s.algorithm == DkimAlgorithm::ed25519_sha256);
    CHECK(s.header_canon == DkimCanon::relaxed);
    CHECK(s.body_canon == DkimCanon::relaxed);
    CHECK(s.domain == "mail.example.com");
    CHECK(s.selector == "sel_1");
    CHECK(s.signed_headers == std::vector<std::string>{"from", "subject", "to"});
    CHECK(s.identity == "user@sub.mail.example.com");
    CHECK(*s.body_length == 100);
    CHECK(*s.timestamp == 1000);
    CHECK(*s.expiration == 2000);
    CHECK(s.b_text == "QUJD");
    CHECK(s.signature == "ABC");

    REQUIRE(sig_ok("v=1; a=rsa-sha1; c=relaxed; d=e.com; s=s; h=from; bh=AAAA; b=QUJD", s, err));
    CHECK(s.algorithm == DkimAlgorithm::rsa_sha1);  // recognized, so it can be failed by name
    CHECK(s.header_canon == DkimCanon::relaxed);
    CHECK(s.body_canon == DkimCanon::simple);
}

TEST_CASE("DKIM-Signature: errors") {
    for (const char* tag : {"v=1; ", "a=rsa-sha256; ", "d=example.com; ", "s=sel; ", "h=from:to; ", "bh=AAAA; "}) {
        std::string v = kBase;
        v.erase(v.find(tag), std::string(tag).size());
        CHECK(sig_error(v).starts_with("missing"));
    }
    CHECK(sig_error(kBase.substr(0, kBase.find("; b="))) == "missing b= tag");
    CHECK(sig_error("v=2" + kBase.substr(3)) == "unsupported version v=2");
    CHECK(sig_error(kBase + "; v=1") == "duplicate tag v");
    CHECK(sig_error("v=1; a=rsa-md5; d=e.com; s=s; h=from; bh=AAAA; b=QUJD").starts_with("unsupported algorithm"));
    CHECK(sig_error(kBase + "; c=fancy") == "unknown canonicalization c=");
    CHECK(sig_error(kBase + "; c=relaxed/fancy") == "unknown canonicalization c=");
    CHECK(sig_error("v=1; a=rsa-sha256; d=e.com; s=s; h=to:subject; bh=AAAA; b=QUJD") == "From is not signed");
    CHECK(sig_error("v=1; a=rsa-sha256; d=e.com; s=s; h=from::to; bh=AAAA; b=QUJD") == "empty header name in h=");
    CHECK(sig_error(kBase + "; i=user@example.org") == "i= is not within d=");
    CHECK(sig_error(kBase + "; i=user@badexample.com") == "i= is not within d=");
    CHECK(sig_error(kBase + "; i=example.com") == "i= without '@'");
    CHECK(sig_error(kBase + "; t=2000; x=1000") == "x= is before t=");
    CHECK(sig_error(kBase + "; t=1234567890123") == "bad t= value");
    CHECK(sig_error(kBase + "; l=-1") == "bad l= value");
    CHECK(sig_error(kBase + "; l=99999999999999999999") == "bad l= value");
    CHECK(sig_error(kBase + "; q=http/well-known") == "q= without dns/txt");
    CHECK(sig_error("v=1; a=rsa-sha256; d=e.com; s=s; h=from; bh=AAAA; b=") == "b= is not base64");
    CHECK(sig_error("v=1; a=rsa-sha256; d=e.com; s=s; h=from; bh=A!AA; b=QUJD") == "bh= is not base64");
    CHECK(sig_error("v=1; a=rsa-sha256; d=e..com; s=s; h=from; bh=AAAA; b=QUJD") == "bad domain d=");
    CHECK(sig_error("v=1; a=rsa-sha256; d=-e.com; s=s; h=from; bh=AAAA; b=QUJD") == "bad domain d=");
    CHECK(sig_error("v=1; a=rsa-sha256; d=e.com; s=a/b; h=from; bh=AAAA; b=QUJD") == "bad selector s=");
    CHECK(sig_error("v=1; a=rsa-sha256; d=e.com; s=s; h=from:t\x7fo; bh=AAAA; b=QUJD") ==
          "control character in tag value");
}

TEST_CASE("DKIM-Signature: hostile sizes are refused without reading them all") {
    std::string huge_h = "v=1; a=rsa-sha256; d=e.com; s=s; bh=AAAA; b=QUJD; h=from";
    while (huge_h.size() < (1 << 20)) huge_h += ":to";
    CHECK(sig_error(huge_h) == "tag list too long");
    std::string many_h = "v=1; a=rsa-sha256; d=e.com; s=s; bh=AAAA; b=QUJD; h=from";
    for (int i = 0; i < 200; i++) many_h += ":to";
    CHECK(sig_error(many_h) == "too many header names in h=");
    CHECK(sig_error(std::string(5000, ';')) == "bad tag name");
}

TEST_CASE("key record: defaults, flags and lists") {
    DkimKey k;
    std::string err;
    REQUIRE(parse_dkim_key("p=QUJD", k, err));
    CHECK(k.type == DkimKeyType::rsa);
    CHECK(k.public_key == "ABC");
    CHECK_FALSE(k.revoked);
    CHECK_FALSE(k.testing);
    CHECK(k.sha256_allowed);
    CHECK(k.email_service);

    REQUIRE(parse_dkim_key("v=DKIM1; k=ed25519; h=sha1:sha256; s=email:other; t=y:s:future; n=notes; p=QU JD", k, err));
    CHECK(k.type == DkimKeyType::ed25519);
    CHECK(k.testing);
    CHECK(k.strict_identity);
    CHECK(k.sha256_allowed);
    CHECK(k.email_service);

    REQUIRE(parse_dkim_key("v=DKIM1; p=", k, err));
    CHECK(k.revoked);
    REQUIRE(parse_dkim_key("h=sha1; s=*; p=QUJD", k, err));
    CHECK_FALSE(k.sha256_allowed);
    CHECK(k.email_service);
    REQUIRE(parse_dkim_key("s=tlsrpt; p=QUJD", k, err));
    CHECK_FALSE(k.email_service);
}

TEST_CASE("key record: errors") {
    DkimKey k;
    std::string err;
    CHECK_FALSE(parse_dkim_key("k=rsa", k, err));
    CHECK(err == "key record without p=");
    CHECK_FALSE(parse_dkim_key("k=rsa; v=DKIM1; p=QUJD", k, err));
    CHECK_FALSE(parse_dkim_key("v=DKIM2; p=QUJD", k, err));
    CHECK_FALSE(parse_dkim_key("k=dsa; p=QUJD", k, err));
    CHECK_FALSE(parse_dkim_key("p=QUJ", k, err));
    CHECK_FALSE(parse_dkim_key("p=QUJD; p=QUJD", k, err));
    CHECK_FALSE(parse_dkim_key("v=spf1 -all", k, err));
}

TEST_CASE("DNS names for d= and s=") {
    CHECK(valid_dns_name("example.com", false));
    CHECK(valid_dns_name("a", false));
    CHECK(valid_dns_name("x-1.example", false));
    CHECK_FALSE(valid_dns_name("_dmarc.example", false));
    CHECK(valid_dns_name("_dmarc.example", true));
    CHECK_FALSE(valid_dns_name("", false));
    CHECK_FALSE(valid_dns_name("a..b", false));
    CHECK_FALSE(valid_dns_name("a.", false));
    CHECK_FALSE(valid_dns_name("a-.b", false));
    CHECK_FALSE(valid_dns_name(std::string(64, 'a') + ".com", false));
    CHECK(valid_dns_name(std::string(63, 'a') + ".com", false));
    std::string long_name;
    while (long_name.size() < 254) long_name += "abcdefgh.";
    CHECK_FALSE(valid_dns_name(long_name + "com", false));
    CHECK(iequals("From", "fROM"));
    CHECK_FALSE(iequals("From", "Fro"));
}
