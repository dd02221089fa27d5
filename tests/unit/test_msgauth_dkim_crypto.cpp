// Unit tests for the DKIM crypto layer: PEM private keys, key records built from them (compared with the
// records dkimpy's fixtures were verified against), public keys from DNS bytes, sign/verify of digests.
#include <doctest/doctest.h>

#include <string>

#include "msgauth/dkim_crypto.h"
#include "msgauth_dkim_fixtures.h"
#include "msgauth_test_keys.h"

using namespace mta::msgauth;

namespace {

DkimKey key_record(const char* text) {
    DkimKey k;
    std::string err;
    REQUIRE(parse_dkim_key(text, k, err));
    return k;
}

}  // namespace

TEST_CASE("SHA-256: incremental equals one-shot, known vector") {
    Sha256 h;
    h.update("a");
    h.update("");
    h.update("bc");
    std::string d = h.final();
    CHECK(d == sha256("abc"));
    CHECK(base64_encode(d) == "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
}

TEST_CASE("private keys: RSA-2048 and Ed25519 PEM load, their records match what was published") {
    DkimPrivateKey rsa, ed;
    std::string err;
    REQUIRE(load_private_key(dkim_fixtures::kRsaPrivatePem, rsa, err));
    CHECK(rsa.type == DkimKeyType::rsa);
    CHECK(rsa.bits == 2048);
    CHECK(public_key_record(rsa) == dkim_fixtures::kRsaRecord);
    REQUIRE(load_private_key(test_keys::kEd25519Pem, ed, err));
    CHECK(ed.type == DkimKeyType::ed25519);
    CHECK(public_key_record(ed) == test_keys::kEd25519Record);
}

TEST_CASE("private keys: refused") {
    DkimPrivateKey k;
    std::string err;
    CHECK_FALSE(load_private_key("", k, err));
    CHECK_FALSE(load_private_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", k, err));
    CHECK_FALSE(load_private_key(test_keys::kRsa512Pem, k, err));
    CHECK(err == "RSA key of 512 bits is too small (RFC 8301)");
    CHECK(public_key_record(DkimPrivateKey{}).empty());
}

TEST_CASE("public keys from records: SPKI and PKCS#1 RSA, Ed25519, garbage") {
    DkimPublicKey p;
    std::string err;
    REQUIRE(load_public_key(key_record(dkim_fixtures::kRsaRecord), p, err));
    CHECK(p.bits == 2048);
    REQUIRE(load_public_key(key_record(test_keys::kRsa512Pkcs1Record), p, err));
    CHECK(p.bits == 512);
    REQUIRE(load_public_key(key_record(test_keys::kEd25519Record), p, err));
    CHECK(p.type == DkimKeyType::ed25519);

    CHECK_FALSE(load_public_key(key_record("k=ed25519; p=QUJD"), p, err));
    CHECK(err == "Ed25519 key is not 32 bytes");
    CHECK_FALSE(load_public_key(key_record("k=rsa; p=QUJD"), p, err));
    // A valid key with a byte after it.
    std::string rec = std::string(test_keys::kRsa512Record);
    DkimKey k = key_record(rec.c_str());
    k.public_key.push_back('\0');
    CHECK_FALSE(load_public_key(k, p, err));
    // An Ed25519 key's bytes published as k=rsa.
    k = key_record(test_keys::kEd25519Record);
    k.type = DkimKeyType::rsa;
    CHECK_FALSE(load_public_key(k, p, err));
}

TEST_CASE("sign and verify digests with both key types") {
    std::string err;
    DkimPrivateKey rsa, ed;
    REQUIRE(load_private_key(dkim_fixtures::kRsaPrivatePem, rsa, err));
    REQUIRE(load_private_key(test_keys::kEd25519Pem, ed, err));
    DkimPublicKey rsa_pub, ed_pub;
    REQUIRE(load_public_key(key_record(dkim_fixtures::kRsaRecord), rsa_pub, err));
    REQUIRE(load_public_key(key_record(test_keys::kEd25519Record), ed_pub, err));
    const std::string digest = sha256("header data"), other = sha256("header datA");

    std::string sig;
    REQUIRE(sign_digest(rsa, digest, sig, err));
    CHECK(sig.size() == 256);
    CHECK(verify_digest(rsa_pub, digest, sig));
    CHECK_FALSE(verify_digest(rsa_pub, other, sig));
    CHECK_FALSE(verify_digest(ed_pub, digest, sig));

    REQUIRE(sign_digest(ed, digest, sig, err));
    CHECK(sig.size() == 64);
    CHECK(verify_digest(ed_pub, digest, sig));
    CHECK_FALSE(verify_digest(ed_pub, other, sig));
    sig[0] = static_cast<char>(sig[0] ^ 1);
    CHECK_FALSE(verify_digest(ed_pub, digest, sig));
    CHECK_FALSE(verify_digest(DkimPublicKey{}, digest, sig));
    CHECK_FALSE(sign_digest(DkimPrivateKey{}, digest, sig, err));
}
