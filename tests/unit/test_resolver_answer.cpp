// Unit tests for resolver/answer.cpp and resolver/dns_context.cpp's pure helpers: reply building with
// its bounds, and trust anchor file parsing.
#include <doctest/doctest.h>

#include <string>

#include "resolver/answer.h"
#include "resolver/dns_context.h"
#include "resolver/rdata.h"

using namespace mta;
using namespace mta::resolver;
using namespace std::string_literals;

TEST_CASE("build_answer passes valid records, status and rcode") {
    RawResult r;
    r.rcode = 0;
    r.secure = true;
    std::string a1 = "\xc0\x00\x02\x01"s, a2 = "\xc0\x00\x02\x02"s;
    r.rdata = {a1, a2};
    Answer a = build_answer(kTypeA, r);
    CHECK(a.rcode == 0);
    CHECK(a.dnssec == ipc::DnssecStatus::secure);
    CHECK(a.records == std::vector<std::string>{"192.0.2.1", "192.0.2.2"});
    CHECK(a.dropped == 0);
    r.rcode = 3;
    r.secure = false;
    r.rdata.clear();
    a = build_answer(kTypeA, r);
    CHECK(a.rcode == 3);
    CHECK(a.dnssec == ipc::DnssecStatus::insecure);
    CHECK(a.records.empty());
}

TEST_CASE("bogus answers carry no records and SERVFAIL") {
    RawResult r;
    r.rcode = 0;
    r.bogus = true;
    r.why_bogus = "signature expired";
    std::string a1 = "\xc0\x00\x02\x01"s;
    r.rdata = {a1};
    Answer a = build_answer(kTypeA, r);
    CHECK(a.rcode == 2);
    CHECK(a.dnssec == ipc::DnssecStatus::bogus);
    CHECK(a.text == "signature expired");
    CHECK(a.records.empty());
}

TEST_CASE("malformed records are dropped; all-malformed becomes an error, not 'no data'") {
    RawResult r;
    std::string good = "\xc0\x00\x02\x01"s, bad = "\x01\x02"s;
    r.rdata = {bad, good};
    Answer a = build_answer(kTypeA, r);
    CHECK(a.records == std::vector<std::string>{"192.0.2.1"});
    CHECK(a.dropped == 1);
    r.rdata = {bad};
    a = build_answer(kTypeA, r);
    CHECK(a.rcode == kRcodeError);
    CHECK(a.text == "malformed records");
}

TEST_CASE("record count and total size are bounded") {
    RawResult r;
    std::vector<std::string> store;
    for (int i = 0; i < 150; i++) store.push_back(std::string(4, char(i)));
    for (auto& s : store) r.rdata.push_back(s);
    Answer a = build_answer(kTypeA, r);
    CHECK(a.records.size() == kMaxRecords);
    CHECK(a.dropped == 50);

    RawResult t;
    std::string txt;
    for (int i = 0; i < 15; i++) txt += "\xff" + std::string(255, 'x');  // 3825 bytes of text
    for (int i = 0; i < 100; i++) t.rdata.push_back(txt);
    a = build_answer(kTypeTXT, t);
    CHECK(a.records.size() == kMaxRecordBytes / 3825);
    ipc::Message m = reply_message(9, a);
    CHECK(ipc::encode(m).size() < ipc::kMaxMessage);
}

TEST_CASE("reply_message layout") {
    Answer a = error_answer("timeout");
    ipc::Message m = reply_message(42, a);
    CHECK(m.type == ipc::Type::resolve_reply);
    CHECK(m.reqid == 42);
    CHECK(m.get_u64(ipc::Tag::rcode) == kRcodeError);
    CHECK(m.get_u64(ipc::Tag::dnssec) == uint64_t(ipc::DnssecStatus::insecure));
    CHECK(m.str(ipc::Tag::text) == "timeout");
    CHECK(m.get(ipc::Tag::record) == nullptr);
}

TEST_CASE("parse_trust_anchors") {
    auto v = parse_trust_anchors(
        "; root\n"
        ". IN DNSKEY 257 3 8 AwEAAaz/tAm8 ; keytag 20326\n"
        "\n"
        "$TTL 300\n"
        "test.example. 3600 IN DS 12345 13 2 (\n"
        "   AABBCC ; first half\n"
        "   DDEEFF )\n"
        "last.example. IN\tDS 1 8 2 00");
    REQUIRE(v.size() == 3);
    CHECK(v[0] == ". IN DNSKEY 257 3 8 AwEAAaz/tAm8");
    CHECK(v[1] == "test.example. 3600 IN DS 12345 13 2 AABBCC DDEEFF");
    CHECK(v[2] == "last.example. IN DS 1 8 2 00");
    CHECK(parse_trust_anchors("").empty());
    CHECK(parse_trust_anchors("; only a comment\n\n").empty());
    CHECK(parse_trust_anchors("x. IN DS ( 1 2").size() == 1);  // unbalanced: passed on for unbound to judge
}

TEST_CASE("dns_settings lists the root key first") {
    Config c;
    c.dns_forwarder = "127.0.0.53";
    c.dns_trust_anchors = "/etc/mta/anchors";
    c.dns_insecure_domains = {"test.example"};
    DnsSettings s = dns_settings(c, "/r.key");
    CHECK(s.forwarder == "127.0.0.53");
    CHECK(s.trust_anchor_files == std::vector<std::string>{"/r.key", "/etc/mta/anchors"});
    CHECK(s.insecure_domains == std::vector<std::string>{"test.example"});
}
