// Unit tests for DKIM verification: messages signed by dkimpy (an independent implementation) pass,
// tampering fails, every key and DNS problem gets its RFC result, and hostile headers stay bounded.
#include <doctest/doctest.h>

#include <openssl/pem.h>

#include <string>

#include "msgauth/dkim_sign.h"
#include "msgauth/dkim_verify.h"
#include "msgauth_dkim_fixtures.h"
#include "msgauth_test_keys.h"

using namespace mta::msgauth;

namespace {

using Keys = std::vector<std::pair<std::string, DnsAnswer>>;

DnsAnswer txt(std::string r) { return DnsAnswer{DnsAnswer::Status::ok, {std::move(r)}}; }

const Keys kFixtureKeys = {{"rsa2048._domainkey.example.com", txt(dkim_fixtures::kRsaRecord)},
                           {"ed._domainkey.example.com", txt(dkim_fixtures::kEd25519Record)}};

DkimVerdict verify_one(const std::string& msg, const Keys& keys = kFixtureKeys, uint64_t now = 0) {
    auto r = dkim_verify_message(msg, 8, now, keys);
    REQUIRE(r.size() == 1);
    return r[0];
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
    std::size_t p = s.find(from);
    REQUIRE(p != std::string::npos);
    return s.replace(p, from.size(), to);
}

// A message signed by our signer with `key` for d=example.org, s=t, signed at t=1000.
std::string signed_by(const DkimPrivateKey& key, const std::string& msg, std::optional<uint64_t> expire = {}) {
    DkimSigningKey k{"example.org", "t", {}};
    k.key.type = key.type;
    k.key.bits = key.bits;
    k.key.pkey.reset(EVP_PKEY_dup(key.pkey.get()));
    HeaderSection hs;
    std::string err;
    REQUIRE(parse_header_section(msg, hs, err));
    DkimSigner s({&k}, 1000, expire);
    s.feed_body(std::string_view(msg).substr(hs.body_offset));
    std::vector<std::string> out;
    REQUIRE(s.finish(hs.fields, out, err));
    return out.at(0) + msg;
}

const std::string kPlain = "From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n";

}  // namespace

TEST_CASE("dkimpy-signed fixtures pass: RSA-2048 and Ed25519, all canonicalizations") {
    for (const char* m : {dkim_fixtures::k_rsa_relaxed, dkim_fixtures::k_rsa_simple, dkim_fixtures::k_rsa_relaxed_simple_l,
                          dkim_fixtures::k_ed_relaxed, dkim_fixtures::k_ed_simple_relaxed}) {
        DkimVerdict v = verify_one(m);
        CHECK_MESSAGE(v.result == AuthResult::pass, v.reason);
        CHECK(v.domain == "example.com");
        CHECK(v.identity == "@example.com");
        CHECK(v.b_prefix.size() == 8);
        CHECK_FALSE(v.body_length_limited);
    }
    CHECK(verify_one(dkim_fixtures::k_ed_relaxed).algorithm == "ed25519-sha256");
    CHECK(verify_one(dkim_fixtures::k_rsa_simple).selector == "rsa2048");
}

TEST_CASE("chunked body feeding gives the same verdict") {
    const std::string msg = dkim_fixtures::k_rsa_simple;
    HeaderSection hs;
    std::string err;
    REQUIRE(parse_header_section(msg, hs, err));
    for (std::size_t step : {1, 2, 7}) {
        DkimVerifier v(hs.fields, 4, 0);
        std::string_view body = std::string_view(msg).substr(hs.body_offset);
        for (std::size_t i = 0; i < body.size(); i += step) v.feed_body(body.substr(i, step));
        CHECK(v.queries().empty());  // nothing is asked before the body hash is known
        v.finish_body();
        auto q = v.queries();
        REQUIRE(q.size() == 1);
        CHECK(q[0].name == "rsa2048._domainkey.example.com");
        CHECK_FALSE(v.done());
        DkimVerifier moved = std::move(v);  // the daemon keeps verifiers in its session table
        moved.answer(q[0], txt(dkim_fixtures::kRsaRecord));
        CHECK(moved.done());
        CHECK(moved.results()[0].result == AuthResult::pass);
    }
}

TEST_CASE("tampering: a body byte, a signed header, an added oversigned header") {
    const std::string m = dkim_fixtures::k_ed_relaxed;
    DkimVerdict v = verify_one(replace(m, "Hello Bob", "Hello Bot"));
    CHECK(v.result == AuthResult::fail);
    CHECK(v.reason == "body hash did not verify");
    v = verify_one(replace(m, "To: bob@", "To: rob@"));
    CHECK(v.result == AuthResult::fail);
    CHECK(v.reason == "signature did not verify");
    v = verify_one(replace(m, "\r\n\r\nHello", "\r\nFrom: mallory@example.org\r\n\r\nHello"));
    CHECK(v.result == AuthResult::fail);
    // Relaxed canonicalization forgives whitespace changes in headers and body.
    CHECK(verify_one(replace(m, "Subject: fixture   with", "Subject:   fixture with")).result == AuthResult::pass);
    CHECK(verify_one(replace(m, "Hello Bob,  \r\n", "Hello   Bob,\r\n")).result == AuthResult::pass);
    // Simple does not.
    CHECK(verify_one(replace(dkim_fixtures::k_rsa_simple, "Hello Bob,  \r\n", "Hello Bob,\r\n")).result ==
          AuthResult::fail);
}

TEST_CASE("l=: text after the signed length still passes, flagged; l= past the body is an error") {
    std::string m = std::string(dkim_fixtures::k_rsa_relaxed_simple_l) + "appended by a list\r\n";
    DkimVerdict v = verify_one(m);
    CHECK(v.result == AuthResult::pass);
    CHECK(v.body_length_limited);
    m = replace(dkim_fixtures::k_rsa_relaxed_simple_l, "last line\r\n", "");
    v = verify_one(m);
    CHECK(v.result == AuthResult::permerror);
    CHECK(v.reason == "l= exceeds the body length");
}

TEST_CASE("key problems: missing, DNS failure, revoked, wrong type, restrictions, garbage") {
    const std::string m = dkim_fixtures::k_rsa_relaxed;
    auto with_key = [&](DnsAnswer a) { return verify_one(m, {{"rsa2048._domainkey.example.com", a}}); };
    DkimVerdict v = verify_one(m, {});
    CHECK(v.result == AuthResult::permerror);
    CHECK(v.reason == "no key for signature");
    CHECK(with_key(DnsAnswer{DnsAnswer::Status::ok, {}}).result == AuthResult::permerror);
    v = with_key(DnsAnswer{DnsAnswer::Status::error, {}});
    CHECK(v.result == AuthResult::temperror);
    CHECK(with_key(txt("v=DKIM1; p=")).reason == "key revoked");
    CHECK(with_key(txt(test_keys::kEd25519Record)).reason == "key type does not match a=");
    CHECK(with_key(txt(std::string(dkim_fixtures::kRsaRecord) + "; h=sha1")).reason == "key h= does not allow sha256");
    CHECK(with_key(txt(std::string(dkim_fixtures::kRsaRecord) + "; s=tlsrpt")).reason == "key is not for email (s=)");
    CHECK(with_key(txt("v=DKIM1; k=rsa; p=QUJD")).result == AuthResult::permerror);
    CHECK(with_key(txt("v=DKIM1; p=@@@")).result == AuthResult::permerror);
    // The first record that parses is used; a stray one before it does not hide the key.
    CHECK(with_key(DnsAnswer{DnsAnswer::Status::ok, {"some other text", dkim_fixtures::kRsaRecord}}).result ==
          AuthResult::pass);
    v = with_key(txt(std::string(dkim_fixtures::kRsaRecord) + "; t=y"));
    CHECK(v.result == AuthResult::pass);
    CHECK(v.testing);
}

TEST_CASE("RFC 8301: rsa-sha1 fails without a lookup, RSA under 1024 bits fails") {
    std::string m = replace(dkim_fixtures::k_rsa_relaxed, "a=rsa-sha256", "a=rsa-sha1");
    HeaderSection hs;
    std::string err;
    REQUIRE(parse_header_section(m, hs, err));
    DkimVerifier v(hs.fields, 4, 0);
    v.finish_body();
    CHECK(v.queries().empty());
    CHECK(v.done());
    CHECK(v.results()[0].result == AuthResult::fail);
    CHECK(v.results()[0].reason == "rsa-sha1 is not accepted (RFC 8301)");

    DkimPrivateKey small;
    std::unique_ptr<BIO, mta::BioFree> bio(BIO_new_mem_buf(test_keys::kRsa512Pem, -1));
    small.pkey.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    small.bits = 512;
    REQUIRE(small.pkey);
    DkimVerdict r = verify_one(signed_by(small, kPlain), {{"t._domainkey.example.org", txt(test_keys::kRsa512Record)}});
    CHECK(r.result == AuthResult::fail);
    CHECK(r.reason == "RSA key of 512 bits (RFC 8301)");
}

TEST_CASE("x= expiry gives policy; t=s keys refuse subdomain identities") {
    DkimPrivateKey ed;
    std::string err;
    REQUIRE(load_private_key(test_keys::kEd25519Pem, ed, err));
    const Keys keys = {{"t._domainkey.example.org", txt(test_keys::kEd25519Record)}};
    const std::string m = signed_by(ed, kPlain, 100);  // x=1100
    CHECK(verify_one(m, keys, 1100).result == AuthResult::pass);
    DkimVerdict v = verify_one(m, keys, 1101);
    CHECK(v.result == AuthResult::policy);
    CHECK(v.reason == "signature expired");

    const Keys strict = {{"t._domainkey.example.org", txt(std::string(test_keys::kEd25519Record) + "; t=s")}};
    CHECK(verify_one(m, strict).result == AuthResult::pass);
}

TEST_CASE("several signatures: each gets a verdict, one query per key name, the cap holds") {
    std::string two = dkim_fixtures::k_rsa_relaxed;
    std::string sig = two.substr(0, two.find("From: "));
    std::string msg = sig + sig + "DKIM-Signature: garbage\r\n" + two.substr(two.find("From: "));
    HeaderSection hs;
    std::string err;
    REQUIRE(parse_header_section(msg, hs, err));
    DkimVerifier v(hs.fields, 8, 0);
    v.finish_body();  // the body was not fed: both real signatures fail their body hash
    auto r = v.results();
    REQUIRE(r.size() == 3);
    CHECK(r[0].result == AuthResult::fail);
    CHECK(r[2].result == AuthResult::permerror);
    CHECK(r[2].reason.starts_with("bad signature:"));

    struct Run {
        std::size_t queries;
        std::vector<DkimVerdict> results;
        std::size_t ignored;
    };
    auto run = [&](const std::string& m, std::size_t cap) {
        REQUIRE(parse_header_section(m, hs, err));
        DkimVerifier d(hs.fields, cap, 0);
        d.feed_body(std::string_view(m).substr(hs.body_offset));
        d.finish_body();
        auto q = d.queries();
        for (const auto& one : q) d.answer(one, txt(dkim_fixtures::kRsaRecord));
        CHECK(d.done());
        return Run{q.size(), d.results(), d.ignored_signatures()};
    };
    Run both = run(msg, 8);
    CHECK(both.queries == 1);
    CHECK(both.results[0].result == AuthResult::pass);
    CHECK(both.results[1].result == AuthResult::pass);

    std::string flood;
    for (int i = 0; i < 9990; i++)
        flood += "DKIM-Signature: v=1; a=rsa-sha256; b=QUJD; bh=AAAA; d=x.example; s=s" + std::to_string(i) + "; h=from\r\n";
    Run f = run(flood + kPlain, 5);
    CHECK(f.queries == 0);  // every body hash fails before any key is asked for
    CHECK(f.results.size() == 5);
    CHECK(f.ignored == 9985);
}

TEST_CASE("no signature: a single none") {
    auto r = dkim_verify_message(kPlain, 8, 0, {});
    REQUIRE(r.size() == 1);
    CHECK(r[0].result == AuthResult::none);
}
