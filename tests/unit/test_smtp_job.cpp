// Unit tests for smtp-client/smtp_job: strict `deliver` decoding and `deliver_result` encoding.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include "smtp-client/smtp_job.h"

using namespace mta;
using namespace mta::smtp;
using ipc::Tag;

namespace {

ipc::Message base_deliver() {
    ipc::Message m(ipc::Type::deliver, 7);
    m.add_u64(Tag::msgid, 0x1234).add(Tag::sender, "a@b.example").add(Tag::nexthop, "example.com");
    m.add_u64(Tag::size, 100).add_u64(Tag::body_type, 1).add_u64(Tag::smtputf8, 0).add(Tag::envid, "E1");
    m.add_u64(Tag::ret, 2).add_u64(Tag::requiretls, 0);
    m.add_fd(UniqueFd(open("/dev/null", O_RDONLY)));
    return m;
}

}  // namespace

TEST_CASE("smtp job: rcpt_index-first groups") {
    ipc::Message m = base_deliver();
    m.add_u64(Tag::rcpt_index, 0).add(Tag::rcpt, "x@example.com").add_u64(Tag::rcpt_notify, 6).add(Tag::rcpt_orcpt, "rfc822;x@example.com");
    m.add_u64(Tag::rcpt_index, 5).add(Tag::rcpt, "y@example.com");
    Job j;
    std::string err;
    REQUIRE(parse_deliver(m, j, err));
    REQUIRE(j.rcpts.size() == 2);
    CHECK(j.rcpts[0].index == 0);
    CHECK(j.rcpts[0].notify == 6);
    CHECK(j.rcpts[0].orcpt == "rfc822;x@example.com");
    CHECK(j.rcpts[1].index == 5);
    CHECK(j.rcpts[1].addr == "y@example.com");
    CHECK(j.rcpts[1].orcpt.empty());
    CHECK(j.qid() == "0000000000001234");
    CHECK(j.body_type == 1);
    CHECK(j.ret == 2);
    CHECK(j.body.valid());
}

TEST_CASE("smtp job: rcpt-first groups") {
    ipc::Message m = base_deliver();
    m.add(Tag::rcpt, "x@example.com").add_u64(Tag::rcpt_index, 3);
    m.add(Tag::rcpt, "y@example.com").add_u64(Tag::rcpt_notify, 1).add_u64(Tag::rcpt_index, 4);
    Job j;
    std::string err;
    REQUIRE(parse_deliver(m, j, err));
    REQUIRE(j.rcpts.size() == 2);
    CHECK(j.rcpts[0].index == 3);
    CHECK(j.rcpts[1].index == 4);
    CHECK(j.rcpts[1].notify == 1);
}

TEST_CASE("smtp job: malformed requests") {
    std::string err;
    auto bad = [&](auto mutate) {
        ipc::Message m = base_deliver();
        m.add_u64(Tag::rcpt_index, 0).add(Tag::rcpt, "x@example.com");
        mutate(m);
        Job j;
        return !parse_deliver(m, j, err);
    };
    CHECK(bad([](ipc::Message& m) { m.add(Tag::rcpt, "a\r\nRCPT TO:<evil>"); }));
    CHECK(bad([](ipc::Message& m) { m.add_u64(Tag::rcpt_index, 0).add(Tag::rcpt, "dup@x"); }));
    CHECK(bad([](ipc::Message& m) { m.add(Tag::rcpt, "noindex@x"); }));
    CHECK(bad([](ipc::Message& m) { m.fds.clear(); }));
    CHECK(bad([](ipc::Message& m) { m.add_fd(UniqueFd(open("/dev/null", O_RDONLY))); }));
    CHECK(bad([](ipc::Message& m) { m.fields[0].value = "short"; }));  // msgid not 8 bytes
    CHECK(bad([](ipc::Message& m) { m.fields.erase(m.fields.begin() + 2); }));  // no nexthop
    CHECK(bad([](ipc::Message& m) { m.add(Tag::sender, std::string("a\0b", 3)); }));
    CHECK(bad([](ipc::Message& m) { m.add(Tag::envid, "has space"); }));
    CHECK(bad([](ipc::Message& m) { m.add_u64(Tag::body_type, 9); }));
    CHECK(bad([](ipc::Message& m) { m.add(Tag::rcpt_orcpt, "bad\r\n"); }));
    CHECK(bad([](ipc::Message& m) { m.add(Tag::rcpt, std::string(2000, 'a')); }));
    ipc::Message m = base_deliver();
    Job j;
    CHECK_FALSE(parse_deliver(m, j, err));  // no recipients
}

TEST_CASE("smtp job: results") {
    Job j;
    j.msgid = 9;
    j.rcpts.resize(3);
    for (uint64_t i = 0; i < 3; i++) j.rcpts[i].index = i * 10;
    j.rcpts[1].final = true;
    j.rcpts[1].status = ipc::DeliveryStatus::bounced;
    j.rcpts[1].text = "550 no";
    CHECK(j.open_count() == 2);
    j.settle_rest(ipc::DeliveryStatus::delivered, "250 ok");
    CHECK(j.open_count() == 0);
    ipc::Message m = make_result(j, 77);
    CHECK(m.type == ipc::Type::deliver_result);
    CHECK(m.reqid == 77);
    REQUIRE(m.fields.size() == 1 + 3 * 3);
    CHECK(ipc::as_u64(m.fields[0].value) == 9u);
    CHECK(ipc::as_u64(m.fields[4].value) == 10u);
    CHECK(ipc::as_u64(m.fields[5].value) == uint64_t(ipc::DeliveryStatus::bounced));
    CHECK(m.fields[6].value == "550 no");
    CHECK(ipc::as_u64(m.fields[8].value) == uint64_t(ipc::DeliveryStatus::delivered));

    // A huge recipient list still fits one IPC datagram.
    Job big;
    big.rcpts.resize(5000);
    for (auto& r : big.rcpts) r.text = std::string(400, 't');
    CHECK(ipc::encode(make_result(big, 1)).size() <= ipc::kMaxMessage);
}

TEST_CASE("smtp job: envelope utf8") {
    Job j;
    j.sender = "a@b";
    j.rcpts.resize(1);
    j.rcpts[0].addr = "x@y";
    CHECK_FALSE(j.envelope_utf8());
    j.rcpts[0].addr = "\xc3\xa9@y";
    CHECK(j.envelope_utf8());
}

TEST_CASE("smtp job: content_refusal (SMTPUTF8, 8BITMIME)") {
    Job j;
    j.sender = "a@b";
    j.rcpts.resize(1);
    j.rcpts[0].addr = "x@y";
    int asked = 0;
    auto eight = [&] { asked++; return true; };
    auto seven = [&] { asked++; return false; };
    CHECK(content_refusal(j, false, false, "h[1.2.3.4]", eight).empty());  // 7bit, ASCII envelope
    CHECK(asked == 0);  // the body is read only for 8BITMIME mail to a server without 8BITMIME
    j.body_type = 1;
    CHECK(content_refusal(j, false, true, "h", eight).empty());
    CHECK(asked == 0);
    CHECK(content_refusal(j, false, false, "h[1.2.3.4]", eight).rfind("5.6.3 8-bit message, but host h[1.2.3.4] ", 0) == 0);
    CHECK(content_refusal(j, false, false, "h", seven).empty());  // declared 8BITMIME, but ASCII only
    CHECK(asked == 2);
    j.smtputf8 = true;
    CHECK(content_refusal(j, false, true, "h", seven).empty());  // SMTPUTF8 flag, ASCII envelope
    j.rcpts[0].addr = "\xc3\xa9@y";
    CHECK(content_refusal(j, false, true, "h", seven) == "5.6.7 SMTPUTF8 is required, but was not offered by host h");
    CHECK(content_refusal(j, true, true, "h", seven).empty());
    CHECK(content_refusal(j, true, false, "h", eight).rfind("5.6.3 ", 0) == 0);
}

TEST_CASE("smtp job: tls_level from smtp_tls_policy_map") {
    Job j;
    std::string err;
    ipc::Message m = base_deliver();
    m.add(Tag::rcpt, "x@example.com").add_u64(Tag::rcpt_index, 0);
    REQUIRE(parse_deliver(m, j, err));
    CHECK(j.tls_level.empty());  // absent: smtp_tls_level applies
    Job k;
    m = base_deliver();
    m.add(Tag::tls_level, "mta-sts").add(Tag::rcpt, "x@example.com").add_u64(Tag::rcpt_index, 0);
    REQUIRE(parse_deliver(m, k, err));
    CHECK(k.tls_level == "mta-sts");
    for (const char* bad : {"", "Encrypt", "may may", "a-very-long-level-name-indeed", "dane\r\n"}) {
        INFO(bad);
        Job b;
        m = base_deliver();
        m.add(Tag::tls_level, bad).add(Tag::rcpt, "x@example.com").add_u64(Tag::rcpt_index, 0);
        CHECK_FALSE(parse_deliver(m, b, err));
    }
}

TEST_CASE("smtp job: size_refusal (SIZE limit announced by the server)") {
    CHECK(size_refusal(5000, 0, "h").empty());      // no limit announced (or "SIZE" without a number)
    CHECK(size_refusal(100, 100, "h").empty());     // exactly the limit fits
    CHECK(size_refusal(99, 100, "h").empty());
    CHECK(size_refusal(101, 100, "mx[192.0.2.1]") == "5.3.4 message size 101 exceeds size limit 100 of server mx[192.0.2.1]");
    CHECK(size_refusal(UINT64_MAX, UINT64_MAX - 1, "h").rfind("5.3.4 ", 0) == 0);
}
