// Unit tests for smtp-client/local/local_request and local_agent: deliver validation, local part decoding,
// per-recipient results, one copy per mailbox, refusal of unsafe names.
#include <doctest/doctest.h>

#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <string>
#include <unistd.h>

#include "common/log.h"
#include "smtp-client/local/local_agent.h"

using namespace mta;
using namespace mta::local;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/test_local_req_XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::string cmd = "rm -rf '" + path + "'"; (void)!system(cmd.c_str()); }
};

int count_files(const std::string& p) {
    int n = 0;
    DIR* d = opendir(p.c_str());
    if (!d) return -1;
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

UniqueFd devnull() { return UniqueFd(open("/dev/null", O_RDONLY)); }

ipc::Message good_deliver() {
    ipc::Message m(ipc::Type::deliver, 77);
    m.add_u64(ipc::Tag::msgid, 0xABC).add(ipc::Tag::sender, "s@example.org").add(ipc::Tag::nexthop, "localhost");
    m.add(ipc::Tag::rcpt, "a@localhost").add_u64(ipc::Tag::rcpt_index, 0).add_u64(ipc::Tag::rcpt_notify, 0);
    m.add(ipc::Tag::rcpt, "b@localhost").add_u64(ipc::Tag::rcpt_index, 1).add(ipc::Tag::rcpt_orcpt, "rfc822;b@x");
    m.add_fd(devnull());
    return m;
}

bool parses(ipc::Message m) {
    DeliverRequest r;
    std::string err;
    return parse_deliver(m, r, err);
}

}  // namespace

TEST_CASE("local part extraction") {
    CHECK(recipient_local_part("user@example.org") == "user");
    CHECK(recipient_local_part("User.Name@localhost") == "User.Name");
    CHECK(recipient_local_part("\"a@b\"@localhost") == "a@b");           // last '@' splits
    CHECK(recipient_local_part("\"john doe\"@localhost") == "john doe");
    CHECK(recipient_local_part("\"a\\\"b\"@x") == "a\"b");                // quoted-pair decoded
    CHECK(recipient_local_part("\"a\\\\b\"@x") == "a\\b");
    CHECK_FALSE(recipient_local_part("nodomain"));
    CHECK_FALSE(recipient_local_part("@x"));
    CHECK_FALSE(recipient_local_part("a@"));
    CHECK_FALSE(recipient_local_part("\"unterminated@x"));
    CHECK_FALSE(recipient_local_part("\"a\"b\"@x"));
    CHECK_FALSE(recipient_local_part("\"a\\\"@x"));                       // escape eats the closing quote
    CHECK_FALSE(recipient_local_part("a\"b@x"));
}

TEST_CASE("deliver validation") {
    DeliverRequest r;
    std::string err;
    ipc::Message m = good_deliver();
    REQUIRE(parse_deliver(m, r, err));
    CHECK(r.reqid == 77);
    CHECK(r.msgid == 0xABC);
    CHECK(r.sender == "s@example.org");
    REQUIRE(r.rcpts.size() == 2);
    CHECK(r.rcpts[1].index == 1);
    CHECK(r.rcpts[1].address == "b@localhost");
    CHECK(r.body.valid());

    { ipc::Message x = good_deliver(); x.fds.clear(); CHECK_FALSE(parses(std::move(x))); }
    { ipc::Message x = good_deliver(); x.add_fd(devnull()); CHECK_FALSE(parses(std::move(x))); }
    { ipc::Message x = good_deliver(); x.fields.erase(x.fields.begin()); CHECK_FALSE(parses(std::move(x))); }  // msgid
    { ipc::Message x = good_deliver(); x.fields.erase(x.fields.begin() + 1); CHECK_FALSE(parses(std::move(x))); }  // sender
    { ipc::Message x = good_deliver(); x.fields[1].value = "a\r\nX-Injected: 1"; CHECK_FALSE(parses(std::move(x))); }
    { ipc::Message x = good_deliver(); x.fields[0].value = "short"; CHECK_FALSE(parses(std::move(x))); }
    { ipc::Message x = good_deliver(); x.add(ipc::Tag::rcpt, "c@localhost"); CHECK_FALSE(parses(std::move(x))); }  // no index
    { ipc::Message x = good_deliver(); x.add(ipc::Tag::rcpt, "c@l").add_u64(ipc::Tag::rcpt_index, 1); CHECK_FALSE(parses(std::move(x))); }
    { ipc::Message x = good_deliver(); x.add_u64(ipc::Tag::rcpt_index, 5); CHECK_FALSE(parses(std::move(x))); }  // 2nd index
    { ipc::Message x = good_deliver(); x.add(ipc::Tag::rcpt, ""); CHECK_FALSE(parses(std::move(x))); }
    {
        ipc::Message x(ipc::Type::deliver, 1);
        x.add_u64(ipc::Tag::msgid, 1).add(ipc::Tag::sender, "").add_fd(devnull());
        CHECK_FALSE(parses(std::move(x)));  // no recipients
        ipc::Message y(ipc::Type::deliver, 1);
        y.add_u64(ipc::Tag::msgid, 1).add(ipc::Tag::sender, "").add_u64(ipc::Tag::rcpt_index, 0);
        y.add(ipc::Tag::rcpt, "a@b").add_fd(devnull());
        CHECK_FALSE(parses(std::move(y)));  // per-recipient tag before any rcpt
    }
}

TEST_CASE("deliver_result layout") {
    std::vector<RcptResult> res{{3, {ipc::DeliveryStatus::delivered, "2.0.0 ok", {}}},
                                {9, {ipc::DeliveryStatus::bounced, "5.1.1 no", {}}}};
    ipc::Message m = build_result(42, 0x10, res);
    CHECK(m.type == ipc::Type::deliver_result);
    CHECK(m.reqid == 42);
    REQUIRE(m.fields.size() == 7);
    CHECK(m.fields[0].tag == ipc::Tag::msgid);
    CHECK(m.fields[4].tag == ipc::Tag::rcpt_index);
    CHECK(ipc::as_u64(m.fields[4].value) == 9u);
    CHECK(ipc::as_u64(m.fields[5].value) == uint64_t(ipc::DeliveryStatus::bounced));
    CHECK(m.fields[6].value == "5.1.1 no");
    CHECK(qid_text(0xABC) == "0000000000000ABC");
}

TEST_CASE("agent: one copy per mailbox, unsafe names bounced") {
    log::init("test", true);
    log::set_level(log::Level::error);
    TempDir t;
    UniqueFd root(open(t.path.c_str(), O_RDONLY | O_DIRECTORY));
    { std::ofstream f(t.path + "/body", std::ios::binary); f << "Subject: x\r\n\r\nhi\r\n"; }
    uint64_t tick = 0;
    Agent agent(root.get(), "mx/1:a", 99, [&] { return Clock{1000, tick++}; });

    DeliverRequest req;
    req.reqid = 1;
    req.msgid = 5;
    req.sender = "";
    req.body = UniqueFd(open((t.path + "/body").c_str(), O_RDONLY));
    req.rcpts = {{0, "Alice@localhost"}, {1, "alice@other.example"}, {2, "\"../etc\"@localhost"},
                 {3, "\"x y\"@localhost"}, {4, "bob@localhost"}, {5, "nodomain"}};
    auto res = agent.deliver(req);
    REQUIRE(res.size() == 6);
    CHECK(res[0].index == 0);
    CHECK(res[0].outcome.status == ipc::DeliveryStatus::delivered);
    CHECK(res[0].outcome.file.rfind("alice/new/1000.M0P99Q1.mx\\0571\\072a,S=", 0) == 0);
    CHECK(res[1].outcome.status == ipc::DeliveryStatus::delivered);  // same mailbox: same result, no copy
    CHECK(res[1].outcome.file == res[0].outcome.file);
    CHECK(res[2].outcome.status == ipc::DeliveryStatus::bounced);
    CHECK(res[2].outcome.text == "5.1.1 unsafe mailbox name");
    CHECK(res[3].outcome.status == ipc::DeliveryStatus::bounced);
    CHECK(res[4].outcome.status == ipc::DeliveryStatus::delivered);
    CHECK(res[5].outcome.status == ipc::DeliveryStatus::bounced);
    CHECK(count_files(t.path + "/alice/new") == 1);
    CHECK(count_files(t.path + "/bob/new") == 1);
    CHECK(count_files(t.path + "/alice/tmp") == 0);

    std::ifstream f(t.path + "/" + res[4].outcome.file, std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CHECK(content == "Return-Path: <>\nDelivered-To: bob@localhost\nSubject: x\n\nhi\n");
}
