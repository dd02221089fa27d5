// Unit tests for DKIM signing: the h= set with oversigning, the folded field layout, and signatures
// frozen after dkimpy (an independent implementation) verified them: RSA and Ed25519 are deterministic.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "msgauth/dkim_sign.h"
#include "msgauth/dkim_verify.h"
#include "msgauth_dkim_fixtures.h"
#include "msgauth_test_keys.h"

using namespace mta::msgauth;

namespace {

const std::string kMessage =
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: frozen\r\n"
    "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    "Message-ID: <frozen@example.org>\r\n"
    "\r\n"
    "Signed once, checked by dkimpy.\r\n";

// Our output for kMessage at t=1796000000 with the fixture keys, frozen after dkimpy's dkim.verify()
// accepted both (each signature alone in front of kMessage, the key records as its dnsfunc's answers).
const std::string kRsaSignature =
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=rsa;\r\n"
    "\tt=1796000000; h=from:from:reply-to:subject:subject:date:date:to:to:cc:\r\n"
    "\tmessage-id:message-id:mime-version:content-type:content-transfer-encoding;\r\n"
    "\tbh=+2vSojyA9RBDg5AdJZXDUPH8UYXt5vUn4V4GzgZq1Yo=; b=HGnF79ZZJrxkWG5Z6wCKVVLI0S\r\n"
    "\ti29WrTbMrl7MmMw14tLnI6/tVmBB+EFNB1XHOZW/YoSnFV/cIP3DQp591n7Tr3tix6l/3EV2yaThH\r\n"
    "\tXPJiqanOBOgQNrsQhjLLnuLPzgNGEc7Lr5E54/Q88dB5v9yq2xOgLCr+QfX4uRPstpvAc+g2+7UnV\r\n"
    "\tyUPgYs1ogn/vsQmmar6qKQvstHDNQHf7iH6jDED6nHMjSfFcMYdhkPNOuQOFHmpNnyihn35k9Wil0\r\n"
    "\tVkEt0Yo++sedLEAr7+Mw+a/hHFpGd89gwmuPJ293+M563/LVSdyQLtKnXeP4eNx17rWVr/0xD2KEX\r\n"
    "\tjjDtZ0YQ==\r\n";
const std::string kEd25519Signature =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.org; s=ed;\r\n"
    "\tt=1796000000; h=from:from:reply-to:subject:subject:date:date:to:to:cc:\r\n"
    "\tmessage-id:message-id:mime-version:content-type:content-transfer-encoding;\r\n"
    "\tbh=+2vSojyA9RBDg5AdJZXDUPH8UYXt5vUn4V4GzgZq1Yo=; b=P9osqNTFrpsmS6wZLoq621o4cX\r\n"
    "\ttrbJpjooD7AzFyKhdVrfwHcK1eA/rXBMW6hGPbZTfRaeL1yTCrmqU7NYBTCA==\r\n";

struct Keys {
    DkimSigningKey rsa{"example.org", "rsa", {}}, ed{"example.org", "ed", {}};
    Keys() {
        std::string err;
        REQUIRE(load_private_key(dkim_fixtures::kRsaPrivatePem, rsa.key, err));
        REQUIRE(load_private_key(test_keys::kEd25519Pem, ed.key, err));
    }
};

std::vector<std::string> fields_of(const std::string& msg) {
    HeaderSection hs;
    std::string err;
    REQUIRE(parse_header_section(msg, hs, err));
    std::vector<std::string> names = headers_to_sign(hs.fields);
    return names;
}

}  // namespace

TEST_CASE("h=: present headers once per instance, oversigned ones once more, the rest skipped") {
    auto names = fields_of("Received: x\r\nTo: a\r\nFrom: f\r\nTo: b\r\nX-Mailer: m\r\nList-Id: <l>\r\n\r\n");
    auto count = [&](const std::string& n) { return std::count(names.begin(), names.end(), n); };
    CHECK(count("from") == 2);
    CHECK(count("to") == 3);
    CHECK(count("cc") == 1);           // absent but oversigned: nobody may add one
    CHECK(count("list-id") == 1);      // present, not oversigned
    CHECK(count("references") == 0);   // absent, not oversigned
    CHECK(count("received") == 0);
    CHECK(count("x-mailer") == 0);
    CHECK(names.front() == "from");
}

TEST_CASE("signatures equal the ones dkimpy verified, and verify here too") {
    Keys k;
    std::vector<std::string> out;
    std::string err;
    REQUIRE(dkim_sign_message(kMessage, {&k.rsa, &k.ed}, 1796000000, out, err));
    REQUIRE(out.size() == 2);
    CHECK(out[0] == kRsaSignature);
    CHECK(out[1] == kEd25519Signature);

    std::vector<std::pair<std::string, DnsAnswer>> dns = {
        {"rsa._domainkey.example.org", {DnsAnswer::Status::ok, {dkim_fixtures::kRsaRecord}}},
        {"ed._domainkey.example.org", {DnsAnswer::Status::ok, {test_keys::kEd25519Record}}}};
    auto r = dkim_verify_message(out[0] + out[1] + kMessage, 4, 1796000000, dns);
    REQUIRE(r.size() == 2);
    CHECK(r[0].result == AuthResult::pass);
    CHECK(r[1].result == AuthResult::pass);
    r = dkim_verify_message(out[0] + out[1] + kMessage + "PS\r\n", 4, 1796000000, dns);
    CHECK(r[0].result == AuthResult::fail);
    CHECK(r[1].result == AuthResult::fail);
}

TEST_CASE("field layout: folded at 78, CRLF line ends, x= when asked, body fed in pieces") {
    Keys k;
    HeaderSection hs;
    std::string err;
    std::string msg = "From: a@example.org\r\nSubject: " + std::string(200, 's') + "\r\n\r\nbody\r\nmore\r\n";
    REQUIRE(parse_header_section(msg, hs, err));
    DkimSigner s({&k.rsa}, 1000, 3600);
    std::string_view body = std::string_view(msg).substr(hs.body_offset);
    for (char c : body) s.feed_body(std::string_view(&c, 1));
    std::vector<std::string> out;
    REQUIRE(s.finish(hs.fields, out, err));
    REQUIRE(out.size() == 1);
    const std::string& f = out[0];
    CHECK(f.find("t=1000; x=4600;") != std::string::npos);
    CHECK(f.ends_with("\r\n"));
    std::size_t start = 0;
    while (start < f.size()) {
        std::size_t end = f.find("\r\n", start);
        REQUIRE(end != std::string::npos);
        CHECK(end - start <= 78);
        CHECK(f.find('\n', start) == end + 1);  // no bare LF inside
        start = end + 2;
    }
    std::vector<std::pair<std::string, DnsAnswer>> dns = {
        {"rsa._domainkey.example.org", {DnsAnswer::Status::ok, {dkim_fixtures::kRsaRecord}}}};
    CHECK(dkim_verify_message(f + msg, 4, 2000, dns)[0].result == AuthResult::pass);
    CHECK(dkim_verify_message(f + msg, 4, 5000, dns)[0].result == AuthResult::policy);
}

TEST_CASE("no keys, no signatures; an empty message still signs") {
    Keys k;
    std::vector<std::string> out;
    std::string err;
    REQUIRE(dkim_sign_message(kMessage, {}, 1, out, err));
    CHECK(out.empty());
    REQUIRE(dkim_sign_message("", {&k.ed}, 1, out, err));
    CHECK(out.size() == 1);
}
