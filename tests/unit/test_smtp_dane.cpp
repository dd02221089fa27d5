// Unit tests for smtp-client/smtp_dane: TLS level names, TLSA parsing and usability, the RFC 7672
// per-host decision from a TLSA answer. (The OpenSSL matching is exercised by test_outbound.py.)
#include <doctest/doctest.h>

#include "smtp-client/smtp_dane.h"

using namespace mta;
using namespace mta::smtp;

namespace {
const std::string kSha = "8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d";

DnsAnswer answer(std::vector<std::string> recs, ipc::DnssecStatus st, uint64_t rcode = kRcodeNoError) {
    DnsAnswer a;
    a.rcode = rcode;
    a.dnssec = uint64_t(st);
    a.records = std::move(recs);
    return a;
}
}  // namespace

TEST_CASE("tls levels") {
    TlsLevel l;
    CHECK((parse_tls_level("dane", l) && l == TlsLevel::dane));
    CHECK((parse_tls_level("none", l) && l == TlsLevel::none));
    CHECK((parse_tls_level("encrypt", l) && l == TlsLevel::encrypt));
    CHECK((parse_tls_level("", l) && l == TlsLevel::may));
    CHECK_FALSE(parse_tls_level("verify", l));
    CHECK(std::string(tls_level_name(TlsLevel::dane)) == "dane");
    CHECK((parse_tls_level("mta-sts", l) && l == TlsLevel::mta_sts));
    CHECK(std::string(tls_level_name(TlsLevel::mta_sts)) == "mta-sts");
    CHECK_FALSE(parse_tls_level("mta_sts", l));
}

TEST_CASE("tlsa record parsing") {
    Tlsa t;
    REQUIRE(parse_tlsa_record("3 1 1 " + kSha, t));
    CHECK(t.usage == 3);
    CHECK(t.selector == 1);
    CHECK(t.mtype == 1);
    CHECK(t.data.size() == 32);
    CHECK(t.data[0] == 0x8d);
    CHECK(t.str() == "3 1 1");
    CHECK(t.text() == "3 1 1 " + kSha);  // the presentation form back, as TLS-RPT reports it
    CHECK(parse_tlsa_record("2 0 1 " + std::string(64, 'A'), t));
    CHECK(t.text() == "2 0 1 " + std::string(64, 'a'));
    CHECK_FALSE(parse_tlsa_record("3 1 1", t));
    CHECK_FALSE(parse_tlsa_record("3 1 1 abc", t));       // odd length
    CHECK_FALSE(parse_tlsa_record("3 1 1 zz", t));        // not hex
    CHECK_FALSE(parse_tlsa_record("256 1 1 00", t));
    CHECK_FALSE(parse_tlsa_record("-1 1 1 00", t));
    CHECK_FALSE(parse_tlsa_record("3  1 1 00", t));
    CHECK_FALSE(parse_tlsa_record("3 1 1 " + std::string(9000, '0'), t));
}

TEST_CASE("tlsa usability (RFC 7672 3.1)") {
    Tlsa t;
    REQUIRE(parse_tlsa_record("3 1 1 " + kSha, t));
    CHECK(tlsa_usable(t));
    t.usage = 1;  // PKIX-EE: not for SMTP
    CHECK_FALSE(tlsa_usable(t));
    t.usage = 0;
    CHECK_FALSE(tlsa_usable(t));
    t.usage = 2;
    CHECK(tlsa_usable(t));
    t.mtype = 2;  // SHA-512 needs 64 bytes
    CHECK_FALSE(tlsa_usable(t));
    t.mtype = 0;
    CHECK(tlsa_usable(t));
    t.selector = 2;
    CHECK_FALSE(tlsa_usable(t));
}

TEST_CASE("dane decision from the TLSA answer") {
    using K = DaneDecision::Kind;
    auto d = decide_dane(answer({"3 1 1 " + kSha, "1 1 1 " + kSha}, ipc::DnssecStatus::secure));
    CHECK(d.kind == K::dane);
    CHECK(d.records.size() == 1);  // the PKIX-EE record is dropped
    CHECK(decide_dane(answer({"0 0 1 " + kSha}, ipc::DnssecStatus::secure)).kind == K::encrypt);
    CHECK(decide_dane(answer({"garbage"}, ipc::DnssecStatus::secure)).kind == K::encrypt);
    CHECK(decide_dane(answer({"3 1 1 " + kSha}, ipc::DnssecStatus::insecure)).kind == K::may);
    CHECK(decide_dane(answer({}, ipc::DnssecStatus::secure)).kind == K::may);  // secure NODATA
    CHECK(decide_dane(answer({}, ipc::DnssecStatus::secure, kRcodeNxdomain)).kind == K::may);
    CHECK(decide_dane(answer({"3 1 1 " + kSha}, ipc::DnssecStatus::bogus)).kind == K::skip);
    CHECK(decide_dane(answer({}, ipc::DnssecStatus::insecure, kRcodeServfail)).kind == K::skip);
    CHECK(decide_dane(answer({}, ipc::DnssecStatus::insecure, kRcodeTimeout)).kind == K::skip);
    std::vector<std::string> many(50, "3 1 1 " + kSha);
    CHECK(decide_dane(answer(many, ipc::DnssecStatus::secure)).records.size() == kMaxTlsaRecords);
}

TEST_CASE("tlsa owner name") { CHECK(tlsa_name("mx.example.com", 25) == "_25._tcp.mx.example.com"); }
