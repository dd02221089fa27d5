// Unit tests for queue-manager/envelope: commit and deliver_result validation, deliver construction.
#include <doctest/doctest.h>

#include "queue-manager/envelope.h"
#include "queue-manager/scheduler.h"

using namespace mta;
using namespace mta::queue;
using ipc::Tag;

namespace {
ipc::Message good_commit() {
    ipc::Message c(ipc::Type::commit, 9);
    c.add_u64(Tag::msgid, 5).add(Tag::sender, "a@example.org");
    c.add(Tag::rcpt, "b@Example.NET").add_u64(Tag::rcpt_notify, 4).add(Tag::rcpt_orcpt, "rfc822;b@example.net");
    c.add(Tag::rcpt, "c@localhost").add_u64(Tag::rcpt_notify, 0).add(Tag::rcpt_orcpt, "");
    c.add_u64(Tag::size, 10).add_u64(Tag::body_type, 1).add_u64(Tag::smtputf8, 0).add(Tag::envid, "");
    c.add_u64(Tag::ret, 2).add(Tag::client_addr, "127.0.0.1").add(Tag::client_helo, "h").add_u64(Tag::arrival, 77);
    return c;
}
}  // namespace

TEST_CASE("a well-formed commit parses into records") {
    CommitRequest c;
    std::string err;
    REQUIRE(parse_commit(good_commit(), c, err));
    CHECK(c.msgid == 5);
    CHECK(c.msg.sender == "a@example.org");
    CHECK(c.msg.body_type == 1);
    CHECK(c.msg.ret == 2);
    CHECK(c.msg.arrival == 77);
    CHECK(c.msg.nrcpt == 2);
    REQUIRE(c.rcpts.size() == 2);
    CHECK(c.rcpts[0].notify == 4);
    CHECK(c.rcpts[0].orcpt == "rfc822;b@example.net");
    CHECK(c.rcpts[1].addr == "c@localhost");
}

TEST_CASE("malformed commits are refused") {
    CommitRequest c;
    std::string err;
    auto with = [](auto f) { ipc::Message m = good_commit(); f(m); return m; };
    CHECK_FALSE(parse_commit(with([](ipc::Message& m) { m.fields.erase(m.fields.begin()); }), c, err));  // no msgid
    CHECK_FALSE(parse_commit(with([](ipc::Message& m) { m.fields[1].value = "a\nb"; }), c, err));
    CHECK_FALSE(parse_commit(with([](ipc::Message& m) { m.add_u64(Tag::size, 1); }), c, err));        // duplicate
    CHECK_FALSE(parse_commit(with([](ipc::Message& m) { m.add(Tag::nexthop, "x"); }), c, err));       // unexpected
    CHECK_FALSE(parse_commit(with([](ipc::Message& m) { m.add_u64(Tag::rcpt_notify, 1); }), c, err)); // 2nd notify
    CHECK_FALSE(parse_commit(with([](ipc::Message& m) { m.fields[8].value = "short"; }), c, err));    // bad u64
    ipc::Message none(ipc::Type::commit);
    none.add_u64(Tag::msgid, 1).add(Tag::sender, "");
    CHECK_FALSE(parse_commit(none, c, err));
    CHECK(err == "no recipients");
    ipc::Message early(ipc::Type::commit);
    early.add_u64(Tag::msgid, 1).add(Tag::sender, "").add_u64(Tag::rcpt_notify, 1).add(Tag::rcpt, "x@y");
    CHECK_FALSE(parse_commit(early, c, err));
    ipc::Message body_type(ipc::Type::commit);
    body_type.add_u64(Tag::msgid, 1).add(Tag::sender, "").add(Tag::rcpt, "x@y").add_u64(Tag::body_type, 3);
    CHECK_FALSE(parse_commit(body_type, c, err));
}

TEST_CASE("deliver_result groups start at rcpt_index and need a status") {
    DeliverResult d;
    std::string err;
    ipc::Message m(ipc::Type::deliver_result);
    m.add_u64(Tag::msgid, 5).add_u64(Tag::rcpt_index, 0).add_u64(Tag::status, 0).add(Tag::text, "250 ok");
    m.add_u64(Tag::rcpt_index, 3).add_u64(Tag::status, 2);
    REQUIRE(parse_deliver_result(m, d, err));
    CHECK(d.msgid == 5);
    REQUIRE(d.results.size() == 2);
    CHECK(d.results[0].text == "250 ok");
    CHECK(d.results[1].index == 3);
    CHECK(d.results[1].status == ipc::DeliveryStatus::bounced);

    ipc::Message missing(ipc::Type::deliver_result);
    missing.add_u64(Tag::msgid, 5).add_u64(Tag::rcpt_index, 0);
    CHECK_FALSE(parse_deliver_result(missing, d, err));
    ipc::Message bad(ipc::Type::deliver_result);
    bad.add_u64(Tag::msgid, 5).add_u64(Tag::rcpt_index, 0).add_u64(Tag::status, 3);
    CHECK_FALSE(parse_deliver_result(bad, d, err));
    ipc::Message twice(ipc::Type::deliver_result);
    twice.add_u64(Tag::msgid, 5).add_u64(Tag::rcpt_index, 0).add_u64(Tag::status, 0).add_u64(Tag::status, 1);
    CHECK_FALSE(parse_deliver_result(twice, d, err));
}

TEST_CASE("deliver carries rcpt first in each group and lower-cased domains group recipients") {
    MessageRecord msg;
    msg.sender = "a@b";
    msg.nrcpt = 1;
    RecipientRecord r;
    r.addr = "x@Example.COM";
    r.notify = 4;
    Nexthop to;
    to.host = "example.com";
    ipc::Message d = make_deliver(7, msg, {{3, &r}}, to);
    std::size_t at = 0;
    while (d.fields[at].tag != Tag::rcpt) at++;
    CHECK(d.fields[at + 1].tag == Tag::rcpt_index);
    CHECK(ipc::as_u64(d.fields[at + 1].value) == 3u);
    CHECK(d.get(Tag::rcpt_orcpt) == nullptr);  // empty ORCPT is left out
    CHECK(d.get(Tag::envid) == nullptr);
    CHECK(d.str(Tag::nexthop) == "example.com");
    CHECK(rcpt_domain("x@Example.COM") == "example.com");
    CHECK(rcpt_domain("postmaster") == "");
    CHECK(rcpt_domain("\"a@b\"@[1.2.3.4]") == "[1.2.3.4]");
}
