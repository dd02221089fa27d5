// Unit tests for DKIM key generation: fresh keys load back from their PEM, sign and verify through the
// record they publish, and the zone-file line splits the record into <= 255-octet strings.
#include <doctest/doctest.h>

#include <string>

#include "msgauth/dkim_keygen.h"
#include "msgauth/dkim_tags.h"

using namespace mta::msgauth;

namespace {

// Sign a digest with `key`, verify it with the public key parsed back from its own record.
void round_trip(const DkimPrivateKey& key) {
    std::string pem = private_key_pem(key);
    REQUIRE(pem.rfind("-----BEGIN PRIVATE KEY-----\n", 0) == 0);
    DkimPrivateKey loaded;
    std::string err;
    REQUIRE(load_private_key(pem, loaded, err));
    CHECK(loaded.type == key.type);
    CHECK(loaded.bits == key.bits);
    DkimKey record;
    REQUIRE(parse_dkim_key(public_key_record(key), record, err));
    DkimPublicKey pub;
    REQUIRE(load_public_key(record, pub, err));
    std::string digest = sha256("message"), sig;
    REQUIRE(sign_digest(loaded, digest, sig, err));
    CHECK(verify_digest(pub, digest, sig));
    CHECK_FALSE(verify_digest(pub, sha256("other"), sig));
}

}  // namespace

TEST_CASE("keygen: RSA default size and Ed25519 round-trip through PEM and their records") {
    DkimPrivateKey rsa, ed;
    std::string err;
    REQUIRE(generate_private_key(DkimKeyType::rsa, 0, rsa, err));
    CHECK(rsa.bits == kDefaultRsaBits);
    round_trip(rsa);
    REQUIRE(generate_private_key(DkimKeyType::ed25519, 0, ed, err));
    CHECK(ed.bits == 256);
    round_trip(ed);
    CHECK(public_key_record(ed).rfind("v=DKIM1; k=ed25519; p=", 0) == 0);
}

TEST_CASE("keygen: RSA sizes outside 1024..8192 are refused") {
    DkimPrivateKey k;
    std::string err;
    CHECK_FALSE(generate_private_key(DkimKeyType::rsa, 512, k, err));
    CHECK(err.find("1024") != std::string::npos);
    CHECK_FALSE(generate_private_key(DkimKeyType::rsa, 16384, k, err));
    REQUIRE(generate_private_key(DkimKeyType::rsa, 1024, k, err));
    CHECK(k.bits == 1024);
}

TEST_CASE("keygen: the zone line splits the record into strings of at most 255 octets") {
    std::string record(600, 'A');
    std::string line = txt_record_line("s1", "example.org", record);
    CHECK(line.rfind("s1._domainkey.example.org. IN TXT \"", 0) == 0);
    std::string joined;
    std::size_t strings = 0;
    for (std::size_t p = line.find('"'); p != std::string::npos; p = line.find('"', p + 1)) {
        std::size_t q = line.find('"', p + 1);
        REQUIRE(q != std::string::npos);
        CHECK(q - p - 1 <= 255);
        joined += line.substr(p + 1, q - p - 1);
        strings++;
        p = q;
    }
    CHECK(strings == 3);
    CHECK(joined == record);
    CHECK(txt_record_line("s", "d.example", "v=DKIM1; p=") == "s._domainkey.d.example. IN TXT \"v=DKIM1; p=\"");
}
