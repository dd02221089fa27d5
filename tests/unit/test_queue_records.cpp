// Unit tests for queue-manager/records: round trips, keys, and strict rejection of damaged records.
#include <doctest/doctest.h>

#include <string>

#include "queue-manager/bounce_class.h"
#include "queue-manager/qid.h"
#include "queue-manager/records.h"

using namespace mta::queue;

namespace {

MessageRecord sample_message() {
    MessageRecord m;
    m.arrival = 1700000000;
    m.size = 4096;
    m.body_type = 1;
    m.smtputf8 = 1;
    m.ret = 2;
    m.requiretls = 1;
    m.nrcpt = 3;
    m.sender = "alice@example.org";
    m.envid = "ENV123";
    m.client_addr = "192.0.2.1";
    m.client_helo = "mail.example.org";
    m.auth_user = "alice";
    return m;
}

RecipientRecord sample_rcpt() {
    RecipientRecord r;
    r.state = RcptState::deferred;
    r.notify = 4 | 8;
    r.attempts = 3;
    r.next_attempt = 1700001000;
    r.last_attempt = 1700000500;
    r.addr = "bob@example.net";
    r.orcpt = "rfc822;bob@example.net";
    r.last_error = "451 4.7.1 try later";
    return r;
}

}  // namespace

TEST_CASE("message record round trip") {
    MessageRecord m = sample_message(), back;
    std::string err;
    REQUIRE(decode(encode(m), back, err));
    CHECK(back == m);
    m.sender.clear();  // null sender is valid
    m.state = MessageState::corrupt;
    REQUIRE(decode(encode(m), back, err));
    CHECK(back == m);
    m.hold_reason = "DMARC policy quarantine for example.org";
    REQUIRE(decode(encode(m), back, err));
    CHECK(back == m);
    m.hold_reason = "a\nb";
    CHECK_FALSE(decode(encode(m), back, err));
}

TEST_CASE("a version 2 message record (before hold_reason) still decodes") {
    MessageRecord m = sample_message(), back;
    std::string v2 = encode(m);
    REQUIRE(v2.size() > 4);
    v2.resize(v2.size() - 4);  // the empty hold_reason: its u32 length
    v2[0] = 2;
    std::string err;
    REQUIRE(decode(v2, back, err));
    CHECK(back == m);
    v2[0] = 3;  // the same bytes claiming version 3 lack a field
    CHECK_FALSE(decode(v2, back, err));
}

TEST_CASE("recipient record round trip") {
    RecipientRecord r = sample_rcpt(), back;
    std::string err;
    REQUIRE(decode(encode(r), back, err));
    CHECK(back == r);
    r.last_class = kBounceClassMax;
    REQUIRE(decode(encode(r), back, err));
    CHECK(back == r);
    r.last_class = kBounceClassMax + 1;
    CHECK_FALSE(decode(encode(r), back, err));
}

TEST_CASE("a version 3 recipient record (before last_class) still decodes") {
    RecipientRecord r = sample_rcpt(), back;
    std::string v3 = encode(r);
    v3.resize(v3.size() - 17);  // held_by, held_at, last_class
    v3[0] = 3;
    std::string err;
    REQUIRE(decode(v3, back, err));
    CHECK(back == r);
    v3[0] = 4;
    CHECK_FALSE(decode(v3, back, err));
}

TEST_CASE("a version 4 recipient record (before the hold stamp) still decodes; the stamp is all or nothing") {
    RecipientRecord r = sample_rcpt(), back;
    r.last_class = 3;
    std::string v4 = encode(r);
    v4.resize(v4.size() - 16);  // held_by, held_at
    v4[0] = 4;
    std::string err;
    REQUIRE(decode(v4, back, err));
    CHECK(back == r);
    CHECK(back.held_by == kNoUid);
    v4[0] = 5;
    CHECK_FALSE(decode(v4, back, err));
    r.state = RcptState::held;
    r.held_by = 0;  // root
    r.held_at = 1790000000;
    REQUIRE(decode(encode(r), back, err));
    CHECK(back == r);
    r.held_at = 0;
    CHECK_FALSE(decode(encode(r), back, err));
}

TEST_CASE("suppression record round trip and strict decoding") {
    SuppressionRecord su{1, 1700000000, 1702592000, 0x2A, "mx[192.0.2.1] said: 550 5.1.1 no such user"}, back;
    std::string err;
    std::string bytes = encode(su);
    REQUIRE(decode(bytes, back, err));
    CHECK(back == su);
    for (std::size_t n = 0; n < bytes.size(); n++) CHECK_FALSE(decode(std::string_view(bytes).substr(0, n), back, err));
    CHECK_FALSE(decode(bytes + "x", back, err));
    std::string bad = bytes;
    bad[0] = 2;
    CHECK_FALSE(decode(bad, back, err));
    bad = bytes;
    bad[1] = char(kBounceClassMax + 1);
    CHECK_FALSE(decode(bad, back, err));
    su.reason = "a\r\nb";
    CHECK_FALSE(decode(encode(su), back, err));
}

TEST_CASE("every truncation and any trailing byte is rejected") {
    std::string m = encode(sample_message()), r = encode(sample_rcpt());
    std::string err;
    MessageRecord mo;
    RecipientRecord ro;
    for (std::size_t n = 0; n < m.size(); n++) CHECK_FALSE(decode(std::string_view(m).substr(0, n), mo, err));
    for (std::size_t n = 0; n < r.size(); n++) CHECK_FALSE(decode(std::string_view(r).substr(0, n), ro, err));
    CHECK_FALSE(decode(m + "x", mo, err));
    CHECK(err == "trailing bytes");
    CHECK_FALSE(decode(r + "x", ro, err));
}

TEST_CASE("inconsistent fields are rejected") {
    std::string err;
    MessageRecord mo;
    RecipientRecord ro;
    std::string m = encode(sample_message());
    std::string bad = m;
    bad[0] = 9;  // version
    CHECK_FALSE(decode(bad, mo, err));
    bad = m;
    bad[1] = 7;  // state
    CHECK_FALSE(decode(bad, mo, err));
    bad = m;
    bad[18] = 9;  // body_type
    CHECK_FALSE(decode(bad, mo, err));

    MessageRecord cr = sample_message();
    cr.sender = "a\r\nb@x";
    CHECK_FALSE(decode(encode(cr), mo, err));
    cr = sample_message();
    cr.nrcpt = 0;
    CHECK_FALSE(decode(encode(cr), mo, err));
    cr = sample_message();
    cr.envid = std::string(kMaxEnvid + 1, 'e');
    CHECK_FALSE(decode(encode(cr), mo, err));

    RecipientRecord rr = sample_rcpt();
    rr.addr.clear();
    CHECK_FALSE(decode(encode(rr), ro, err));
    rr = sample_rcpt();
    rr.addr = std::string("a\0b", 3);
    CHECK_FALSE(decode(encode(rr), ro, err));
    rr = sample_rcpt();
    rr.addr = std::string(kMaxAddress + 1, 'a');
    CHECK_FALSE(decode(encode(rr), ro, err));
    std::string r = encode(sample_rcpt());
    r[1] = 4;
    CHECK_FALSE(decode(r, ro, err));
    // A huge length prefix must not be trusted.
    r = encode(sample_rcpt());
    r[30] = char(0xff);
    r[31] = char(0xff);
    CHECK_FALSE(decode(r, ro, err));
}

TEST_CASE("garbage never decodes to something inconsistent") {
    uint64_t seed = 42;
    std::string err;
    for (int i = 0; i < 2000; i++) {
        std::string s;
        for (int n = int(seed % 90); n > 0; n--) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            s.push_back(char(seed >> 56));
        }
        MessageRecord m;
        RecipientRecord r;
        if (decode(s, m, err)) CHECK(encode(m) == s);
        if (decode(s, r, err)) CHECK(encode(r) == s);
    }
}

TEST_CASE("keys sort numerically and parse back") {
    CHECK(message_key(1).view() < message_key(256).view());
    CHECK(schedule_key(99, 5, 1).view() < schedule_key(100, 1, 0).view());
    CHECK(recipient_key(7, 2).view() < recipient_key(7, 10).view());
    uint64_t t, id;
    uint32_t idx;
    REQUIRE(parse_schedule_key(schedule_key(123456789, 0xABCDEF, 77).view(), t, id, idx));
    CHECK(t == 123456789);
    CHECK(id == 0xABCDEF);
    CHECK(idx == 77);
    REQUIRE(parse_recipient_key(recipient_key(9, 3).view(), id, idx));
    CHECK(id == 9);
    CHECK(idx == 3);
    CHECK_FALSE(parse_recipient_key("short", id, idx));
    CHECK_FALSE(parse_schedule_key(message_key(1).view(), t, id, idx));
}

TEST_CASE("queue ids") {
    CHECK(format_qid(0x1A2B) == "0000000000001A2B");
    CHECK(format_qid(UINT64_MAX) == "FFFFFFFFFFFFFFFF");
    CHECK(parse_qid("0000000000001A2B") == 0x1A2Bu);
    CHECK_FALSE(parse_qid("0000000000001a2b"));
    CHECK_FALSE(parse_qid("1A2B"));
    CHECK_FALSE(parse_qid("000000000000-A2B"));
}
