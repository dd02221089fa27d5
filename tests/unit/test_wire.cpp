// Unit tests for common/wire: a round trip per message struct, and every decoder refusing missing,
// duplicate, oversized and bad fields; the shared limits and the queue id format.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <functional>

#include "common/wire/fields.h"
#include "common/wire/wire.h"

using namespace mta;
using ipc::Tag;
using ipc::Type;

namespace {

UniqueFd devnull() { return UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC)); }

// The message after going through the byte codec, as a peer would receive it (fds carried over).
ipc::Message over_the_wire(ipc::Message m) {
    ipc::Message out;
    std::string err;
    REQUIRE(ipc::decode(ipc::encode(m), out, err));
    out.fds = std::move(m.fds);
    return out;
}

template <typename T>
bool decodes(ipc::Message m) {
    T out;
    std::string err;
    bool ok = wire::decode(m, out, err);
    CHECK(ok == err.empty());
    return ok;
}

// Mutations every decoder must refuse: a tag it does not define, a repeated message-level field,
// a wrong message type, an extra fd.
template <typename T>
void refuses_generic(const std::function<ipc::Message()>& good, Tag some_field) {
    CHECK(decodes<T>(good()));
    { ipc::Message m = good(); m.add(Tag(999), "x"); CHECK_FALSE(decodes<T>(std::move(m))); }
    {
        ipc::Message m = good();
        const std::string* v = m.get(some_field);
        REQUIRE(v);
        m.add(some_field, *v);
        CHECK_FALSE(decodes<T>(std::move(m)));
    }
    { ipc::Message m = good(); m.type = m.type == Type::hello ? Type::stop : Type::hello; CHECK_FALSE(decodes<T>(std::move(m))); }
    { ipc::Message m = good(); m.add_fd(devnull()); CHECK_FALSE(decodes<T>(std::move(m))); }
}

template <typename T>
void refuses_without(const std::function<ipc::Message()>& good, Tag t) {
    ipc::Message m = good();
    std::erase_if(m.fields, [t](const ipc::Field& f) { return f.tag == t; });
    CHECK_FALSE(decodes<T>(std::move(m)));
}

template <typename T>
void refuses_value(const std::function<ipc::Message()>& good, Tag t, const std::string& value) {
    ipc::Message m = good();
    bool found = false;
    for (auto& f : m.fields)
        if (f.tag == t && !found) { f.value = value; found = true; }
    REQUIRE(found);
    CHECK_FALSE(decodes<T>(std::move(m)));
}

std::string u64(uint64_t v) { ipc::Message m; m.add_u64(Tag::size, v); return m.fields[0].value; }

wire::Deliver sample_deliver() {
    wire::Deliver d;
    d.msgid = 0x1234;
    d.sender = "a@b.example";
    d.nexthop = "example.com";
    d.size = 100;
    d.body_type = 1;
    d.smtputf8 = true;
    d.envid = "E1";
    d.ret = 2;
    d.requiretls = true;
    d.tls_level = "mta-sts";
    d.max_per_connection = 50;
    d.source_address = "2001:db8::5";
    d.source_helo = "out5.example.com";
    d.rcpts = {{3, "x@example.com", 6, "rfc822;x@example.com"}, {7, "y@example.com", 0, ""}};
    d.body = devnull();
    return d;
}

ipc::Message good_deliver() { wire::Deliver d = sample_deliver(); return wire::encode(d, 9); }

wire::Commit sample_commit() {
    wire::Commit c;
    c.msgid = 5;
    c.sender = "a@example.org";
    c.size = 10;
    c.body_type = 2;
    c.envid = "ENV";
    c.ret = 1;
    c.requiretls = true;
    c.has_arrival = true;
    c.arrival = 77;
    c.client_addr = "192.0.2.1";
    c.client_helo = "h.example";
    c.auth_user = "alice";
    c.rcpts = {{"b@example.net", 4, "rfc822;b@example.net"}, {"c@localhost", 0, ""}};
    return c;
}

}  // namespace

TEST_CASE("wire: clean text, address limit and queue ids") {
    CHECK(wire::clean_text("a@b", 3));
    CHECK_FALSE(wire::clean_text("a@bc", 3));
    for (char c : {'\0', '\r', '\n', '\t', '\x01', '\x1f', '\x7f'}) {
        INFO(int(c));
        CHECK_FALSE(wire::clean_text(std::string("a") + c + "b", 10));
    }
    CHECK(wire::clean_text("\xc3\xa9@x", 10));  // SMTPUTF8 octets are text
    CHECK(wire::make_clean("a\r\nb\tc", 100) == "a  b c");
    CHECK(wire::make_clean("abcdef", 3) == "abc");
    CHECK(wire::kMaxAddress == 320);  // RFC 5321: 64-octet local part, '@', 255-octet domain
    CHECK(wire::format_qid(0x1a2b) == "0000000000001A2B");
    CHECK(wire::format_qid(UINT64_MAX) == "FFFFFFFFFFFFFFFF");
    CHECK(wire::parse_qid("0000000000001A2B") == 0x1a2bu);
    CHECK(wire::parse_qid(wire::format_qid(0xdeadbeefcafe)) == 0xdeadbeefcafeu);
    CHECK_FALSE(wire::parse_qid("0000000000001a2b"));
    CHECK_FALSE(wire::parse_qid("1A2B"));
    CHECK_FALSE(wire::parse_qid("00000000000001A2B"));
}

TEST_CASE("wire: deliver round trip and refusals") {
    wire::Deliver in = sample_deliver();
    ipc::Message m = over_the_wire(wire::encode(in, 9));
    CHECK(m.reqid == 9);
    CHECK_FALSE(in.body.valid());  // moved into the message
    wire::Deliver out;
    std::string err;
    REQUIRE(wire::decode(m, out, err));
    wire::Deliver want = sample_deliver();
    CHECK(out.msgid == want.msgid);
    CHECK(out.sender == want.sender);
    CHECK(out.nexthop == want.nexthop);
    CHECK(out.size == want.size);
    CHECK(out.body_type == want.body_type);
    CHECK(out.smtputf8);
    CHECK(out.envid == want.envid);
    CHECK(out.ret == want.ret);
    CHECK(out.requiretls);
    CHECK(out.tls_level == want.tls_level);
    CHECK(out.max_per_connection == 50);
    CHECK(out.source_address == "2001:db8::5");
    CHECK(out.source_helo == "out5.example.com");
    REQUIRE(out.rcpts.size() == 2);
    CHECK(out.rcpts[0].index == 3);
    CHECK(out.rcpts[0].addr == "x@example.com");
    CHECK(out.rcpts[0].notify == 6);
    CHECK(out.rcpts[0].orcpt == "rfc822;x@example.com");
    CHECK(out.rcpts[1].orcpt.empty());
    CHECK(out.body.valid());

    refuses_generic<wire::Deliver>(good_deliver, Tag::sender);
    for (Tag t : {Tag::msgid, Tag::sender, Tag::nexthop}) refuses_without<wire::Deliver>(good_deliver, t);
    { ipc::Message x = good_deliver(); x.fds.clear(); CHECK_FALSE(decodes<wire::Deliver>(std::move(x))); }
    refuses_value<wire::Deliver>(good_deliver, Tag::msgid, "short");
    refuses_value<wire::Deliver>(good_deliver, Tag::sender, "a\r\nRCPT TO:<evil>");
    refuses_value<wire::Deliver>(good_deliver, Tag::sender, "a\tb@c");
    refuses_value<wire::Deliver>(good_deliver, Tag::sender, std::string(wire::kMaxAddress + 1, 'a'));
    refuses_value<wire::Deliver>(good_deliver, Tag::nexthop, "a b");
    refuses_value<wire::Deliver>(good_deliver, Tag::body_type, u64(3));
    refuses_value<wire::Deliver>(good_deliver, Tag::smtputf8, u64(2));
    refuses_value<wire::Deliver>(good_deliver, Tag::ret, u64(3));
    refuses_value<wire::Deliver>(good_deliver, Tag::envid, "has space");
    refuses_value<wire::Deliver>(good_deliver, Tag::tls_level, "Encrypt");
    refuses_value<wire::Deliver>(good_deliver, Tag::max_per_connection, u64(10000001));
    refuses_value<wire::Deliver>(good_deliver, Tag::source_address, "mail.example.com");
    refuses_value<wire::Deliver>(good_deliver, Tag::source_address, "192.0.2.1\r\nRCPT");
    refuses_value<wire::Deliver>(good_deliver, Tag::source_helo, "bad helo");
    refuses_value<wire::Deliver>(good_deliver, Tag::source_helo, "a\r\nMAIL FROM:<x>");
    refuses_value<wire::Deliver>(good_deliver, Tag::rcpt, "");
    refuses_value<wire::Deliver>(good_deliver, Tag::rcpt, std::string(wire::kMaxAddress + 1, 'a'));
    refuses_value<wire::Deliver>(good_deliver, Tag::rcpt_notify, u64(16));
    refuses_value<wire::Deliver>(good_deliver, Tag::rcpt_index, u64(uint64_t(UINT32_MAX) + 1));
    refuses_value<wire::Deliver>(good_deliver, Tag::rcpt_orcpt, "bad\r\n");
    refuses_value<wire::Deliver>(good_deliver, Tag::rcpt_orcpt, std::string(wire::kMaxOrcpt + 1, 'o'));
    // Recipient groups: a repeated tag opens the next group, which then lacks its rcpt or index.
    { ipc::Message x = good_deliver(); x.add(Tag::rcpt, "z@x"); CHECK_FALSE(decodes<wire::Deliver>(std::move(x))); }
    { ipc::Message x = good_deliver(); x.add_u64(Tag::rcpt_index, 8); CHECK_FALSE(decodes<wire::Deliver>(std::move(x))); }
    { ipc::Message x = good_deliver(); x.add(Tag::rcpt, "z@x").add_u64(Tag::rcpt_index, 3); CHECK_FALSE(decodes<wire::Deliver>(std::move(x))); }
    {
        ipc::Message x = good_deliver();
        std::erase_if(x.fields, [](const ipc::Field& f) { return f.tag == Tag::rcpt || f.tag == Tag::rcpt_index ||
                                                                 f.tag == Tag::rcpt_notify || f.tag == Tag::rcpt_orcpt; });
        CHECK_FALSE(decodes<wire::Deliver>(std::move(x)));  // no recipients
    }
    {
        ipc::Message x(Type::deliver);
        x.add_u64(Tag::msgid, 1).add(Tag::sender, "").add(Tag::nexthop, "h").add_fd(devnull());
        for (uint64_t i = 0; i <= wire::kMaxDeliverRecipients; i++) x.add(Tag::rcpt, "r@x").add_u64(Tag::rcpt_index, i);
        CHECK_FALSE(decodes<wire::Deliver>(std::move(x)));  // more than one job's worth
    }
    {
        ipc::Message x = good_deliver();
        for (auto& f : x.fields)
            if (f.tag == Tag::nexthop) f.value = "";
        CHECK(decodes<wire::Deliver>(std::move(x)));  // local mail for <Postmaster>: no domain, no nexthop
    }
    // Both orders inside a group decode the same.
    wire::Deliver a, b;
    ipc::Message first(Type::deliver), second(Type::deliver);
    for (ipc::Message* x : {&first, &second}) x->add_u64(Tag::msgid, 1).add(Tag::sender, "").add(Tag::nexthop, "h").add_fd(devnull());
    first.add(Tag::rcpt, "r@x").add_u64(Tag::rcpt_index, 4);
    second.add_u64(Tag::rcpt_index, 4).add(Tag::rcpt, "r@x");
    REQUIRE(wire::decode(first, a, err));
    REQUIRE(wire::decode(second, b, err));
    CHECK(a.rcpts[0].index == b.rcpts[0].index);
    CHECK(a.rcpts[0].addr == b.rcpts[0].addr);
}

TEST_CASE("wire: deliver_result round trip, size cap and refusals") {
    wire::DeliverResult in;
    in.msgid = 44;
    in.results = {{1, ipc::DeliveryStatus::delivered, "250 ok", 2}, {2, ipc::DeliveryStatus::bounced, "550\r\nno", 0},
                  {3, ipc::DeliveryStatus::deferred, std::string(5000, 't'), 1}};
    ipc::Message m = over_the_wire(wire::encode(in, 3));
    wire::DeliverResult out;
    std::string err;
    REQUIRE(wire::decode(m, out, err));
    CHECK(out.msgid == 44);
    REQUIRE(out.results.size() == 3);
    CHECK(out.results[0].handoff == 2);
    CHECK(out.results[1].status == ipc::DeliveryStatus::bounced);
    CHECK(out.results[1].text == "550  no");                       // made clean
    CHECK(out.results[2].text.size() == wire::kMaxResultText);      // cut
    CHECK(out.results[2].handoff == 0);                             // only a delivered recipient has one

    wire::DeliverResult big;
    big.results.resize(5000);  // more than one deliver can carry (each rcpt costs it more than a result)
    for (auto& r : big.results) r.text = std::string(400, 'x');
    ipc::Message bm = wire::encode(big, 1);
    CHECK(ipc::encode(bm).size() <= ipc::kMaxMessage);
    CHECK(wire::decode(bm, out, err));
    // With TLS-RPT counts at their largest it still fits; bytes travel as they are.
    big.tlsrpt = std::string(wire::kMaxTlsrpt, '\0');
    big.tlsrpt_rua = std::string(wire::kMaxTlsrpt, 'a');
    bm = wire::encode(big, 1);
    CHECK(ipc::encode(bm).size() <= ipc::kMaxMessage);
    REQUIRE(wire::decode(bm, out, err));
    CHECK(out.tlsrpt == big.tlsrpt);
    in.tlsrpt = std::string("\x01\xff\0x", 4);
    in.tlsrpt_rua = "a@b.example,c@d.example";
    REQUIRE(wire::decode(over_the_wire(wire::encode(in, 3)), out, err));
    CHECK(out.tlsrpt == in.tlsrpt);
    CHECK(out.tlsrpt_rua == in.tlsrpt_rua);
    in.mx_host = "aspmx.l.google.com";
    REQUIRE(wire::decode(over_the_wire(wire::encode(in, 3)), out, err));
    CHECK(out.mx_host == "aspmx.l.google.com");
    in.tlsrpt_rua.clear();  // counts without anyone to send them to are not sent
    REQUIRE(wire::decode(over_the_wire(wire::encode(in, 3)), out, err));
    CHECK(out.tlsrpt.empty());

    auto good = [] {
        wire::DeliverResult r;
        r.msgid = 5;
        r.results = {{0, ipc::DeliveryStatus::delivered, "250 ok", 1}};
        return wire::encode(r, 1);
    };
    refuses_generic<wire::DeliverResult>(good, Tag::msgid);
    refuses_without<wire::DeliverResult>(good, Tag::msgid);
    refuses_without<wire::DeliverResult>(good, Tag::status);
    refuses_without<wire::DeliverResult>(good, Tag::rcpt_index);
    refuses_value<wire::DeliverResult>(good, Tag::status, u64(3));
    refuses_value<wire::DeliverResult>(good, Tag::text, "a\nb");
    refuses_value<wire::DeliverResult>(good, Tag::text, std::string(wire::kMaxResultText + 1, 'a'));
    refuses_value<wire::DeliverResult>(good, Tag::dsn_handoff, u64(0));
    refuses_value<wire::DeliverResult>(good, Tag::dsn_handoff, u64(3));
    { ipc::Message x = good(); x.add(Tag::tlsrpt, "x"); CHECK_FALSE(decodes<wire::DeliverResult>(std::move(x))); }
    { ipc::Message x = good(); x.add(Tag::mx_host, "bad host"); CHECK_FALSE(decodes<wire::DeliverResult>(std::move(x))); }
    { ipc::Message x = good(); x.add(Tag::tlsrpt_rua, "a@b.c"); CHECK_FALSE(decodes<wire::DeliverResult>(std::move(x))); }
    {
        ipc::Message x = good();
        x.add(Tag::tlsrpt, std::string(wire::kMaxTlsrpt + 1, 'x')).add(Tag::tlsrpt_rua, "a@b.c");
        CHECK_FALSE(decodes<wire::DeliverResult>(std::move(x)));
    }
    { ipc::Message x = good(); x.add_u64(Tag::status, 0); CHECK_FALSE(decodes<wire::DeliverResult>(std::move(x))); }
    {
        ipc::Message x(Type::deliver_result);
        x.add_u64(Tag::msgid, 1).add_u64(Tag::rcpt_index, 0).add_u64(Tag::status, 1).add_u64(Tag::dsn_handoff, 1);
        CHECK_FALSE(decodes<wire::DeliverResult>(std::move(x)));  // handoff on a deferred recipient
    }
}

TEST_CASE("wire: commit round trip and refusals") {
    ipc::Message m = over_the_wire(wire::encode(sample_commit(), 2));
    wire::Commit out;
    std::string err;
    REQUIRE(wire::decode(m, out, err));
    wire::Commit want = sample_commit();
    CHECK(out.msgid == want.msgid);
    CHECK(out.sender == want.sender);
    CHECK(out.size == want.size);
    CHECK(out.body_type == want.body_type);
    CHECK(out.envid == want.envid);
    CHECK(out.ret == want.ret);
    CHECK(out.requiretls);
    CHECK(out.has_arrival);
    CHECK(out.arrival == 77);
    CHECK(out.client_addr == want.client_addr);
    CHECK(out.client_helo == want.client_helo);
    CHECK(out.auth_user == want.auth_user);
    REQUIRE(out.rcpts.size() == 2);
    CHECK(out.rcpts[0].notify == 4);
    CHECK(out.rcpts[0].orcpt == "rfc822;b@example.net");
    CHECK(out.rcpts[1].addr == "c@localhost");
    CHECK(out.hold_reason.empty());
    wire::Commit held = sample_commit();
    held.hold_reason = "DMARC policy quarantine for example.org";
    REQUIRE(wire::decode(over_the_wire(wire::encode(held, 2)), out, err));
    CHECK(out.hold_reason == held.hold_reason);

    auto good = [] { return wire::encode(sample_commit(), 2); };
    auto good_held = [&held] { return wire::encode(held, 2); };
    refuses_value<wire::Commit>(good_held, Tag::hold_reason, "");  // present means held: a reason is required
    refuses_value<wire::Commit>(good_held, Tag::hold_reason, "a\r\nb");
    refuses_value<wire::Commit>(good_held, Tag::hold_reason, std::string(wire::kMaxHoldReason + 1, 'r'));
    refuses_generic<wire::Commit>(good, Tag::size);
    refuses_without<wire::Commit>(good, Tag::msgid);
    refuses_without<wire::Commit>(good, Tag::sender);
    refuses_without<wire::Commit>(good, Tag::rcpt);
    refuses_value<wire::Commit>(good, Tag::msgid, u64(0));
    refuses_value<wire::Commit>(good, Tag::sender, "a\x01@b");
    refuses_value<wire::Commit>(good, Tag::client_helo, std::string(wire::kMaxClientField + 1, 'h'));
    refuses_value<wire::Commit>(good, Tag::envid, "a b");
    refuses_value<wire::Commit>(good, Tag::rcpt_notify, u64(99));
    ipc::Message early(Type::commit);
    early.add_u64(Tag::msgid, 1).add(Tag::sender, "").add_u64(Tag::rcpt_notify, 1).add(Tag::rcpt, "x@y");
    CHECK_FALSE(decodes<wire::Commit>(std::move(early)));  // a group opens at rcpt
}

TEST_CASE("wire: reception messages") {
    std::string err;
    {
        wire::BodyOpenOk in{77, devnull()};
        ipc::Message m = over_the_wire(wire::encode(in, 4));
        wire::BodyOpenOk out;
        REQUIRE(wire::decode(m, out, err));
        CHECK(out.msgid == 77);
        CHECK(out.body.valid());
        auto good = [] { wire::BodyOpenOk b{1, devnull()}; return wire::encode(b, 1); };
        refuses_generic<wire::BodyOpenOk>(good, Tag::msgid);
        refuses_without<wire::BodyOpenOk>(good, Tag::msgid);
        { ipc::Message x = good(); x.fds.clear(); CHECK_FALSE(decodes<wire::BodyOpenOk>(std::move(x))); }
    }
    {
        auto good = [] { return wire::encode(wire::CommitOk{9}, 1); };
        wire::CommitOk out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.msgid == 9);
        refuses_generic<wire::CommitOk>(good, Tag::msgid);
        refuses_without<wire::CommitOk>(good, Tag::msgid);
    }
    {
        auto good = [] { return wire::encode(wire::Abort{9}, 1); };
        wire::Abort out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.msgid == 9);
        refuses_generic<wire::Abort>(good, Tag::msgid);
        refuses_value<wire::Abort>(good, Tag::msgid, "x");
    }
    {
        wire::BodyOpen b;
        CHECK(wire::decode(over_the_wire(wire::encode(b, 1)), b, err));
        ipc::Message x = wire::encode(b, 1);
        x.add_u64(Tag::msgid, 1);
        CHECK_FALSE(decodes<wire::BodyOpen>(std::move(x)));
    }
    {
        wire::SpoolProbe p{devnull()};
        ipc::Message m = over_the_wire(wire::encode(p, 0));
        wire::SpoolProbe out;
        REQUIRE(wire::decode(m, out, err));
        CHECK(out.fd.valid());
        ipc::Message none(Type::spool_probe);
        CHECK_FALSE(decodes<wire::SpoolProbe>(std::move(none)));
    }
    {
        auto good = [] { return wire::encode(wire::Fail{452, "4.3.1", "Insufficient\r\nsystem storage"}, 3); };
        wire::Fail out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.code == 452);
        CHECK(out.enhanced == "4.3.1");
        CHECK(out.text == "Insufficient  system storage");
        refuses_generic<wire::Fail>(good, Tag::text);
        refuses_without<wire::Fail>(good, Tag::code);
        refuses_value<wire::Fail>(good, Tag::code, u64(250));
        refuses_value<wire::Fail>(good, Tag::code, u64(600));
        refuses_value<wire::Fail>(good, Tag::text, std::string(wire::kMaxFailText + 1, 'x'));
        REQUIRE(wire::decode(wire::encode(wire::Fail{550, "4.3.1", "x"}, 1), out, err));
        CHECK(out.enhanced.empty());  // does not fit the code: the receiver picks a generic one
    }
}

TEST_CASE("wire: link and control messages") {
    std::string err;
    {
        auto good = [] { return wire::encode(wire::Hello{ipc::kProtocolVersion, "smtpd"}); };
        wire::Hello out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.role == "smtpd");
        refuses_generic<wire::Hello>(good, Tag::role);
        refuses_without<wire::Hello>(good, Tag::role);
        refuses_value<wire::Hello>(good, Tag::version, u64(ipc::kProtocolVersion + 1));
        refuses_value<wire::Hello>(good, Tag::role, "Smtpd");
    }
    {
        auto good = [] { return wire::encode(wire::Config{"hostname = x\n", "/etc/mta/mta.conf", true, "CERT", "KEY"}); };
        wire::Config out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.text == "hostname = x\n");
        CHECK(out.name == "/etc/mta/mta.conf");
        CHECK(out.has_pem);
        CHECK(out.tls_cert_pem == "CERT");
        CHECK(out.tls_key_pem == "KEY");
        refuses_generic<wire::Config>(good, Tag::config_text);
        refuses_without<wire::Config>(good, Tag::config_text);
        refuses_without<wire::Config>(good, Tag::tls_key_pem);  // the pair comes together
        refuses_value<wire::Config>(good, Tag::name, "a\nb");
    }
    {
        auto good = [] { wire::Peer p{"queue", 2, devnull()}; return wire::encode(p); };
        wire::Peer out;
        ipc::Message m = over_the_wire(good());
        REQUIRE(wire::decode(m, out, err));
        CHECK(out.role == "queue");
        CHECK(out.instance == 2);
        CHECK(out.fd.valid());
        refuses_generic<wire::Peer>(good, Tag::role);
        refuses_without<wire::Peer>(good, Tag::instance);
        refuses_value<wire::Peer>(good, Tag::role, "");
        { ipc::Message x = good(); x.fds.clear(); CHECK_FALSE(decodes<wire::Peer>(std::move(x))); }
    }
    {
        auto good = [] { wire::Listen l{"submission", devnull()}; return wire::encode(l); };
        wire::Listen out;
        ipc::Message m = over_the_wire(good());
        REQUIRE(wire::decode(m, out, err));
        CHECK(out.kind == "submission");
        refuses_generic<wire::Listen>(good, Tag::listen_kind);
        refuses_value<wire::Listen>(good, Tag::listen_kind, "lmtp");
    }
    {
        wire::Stop s;
        CHECK(wire::decode(over_the_wire(wire::encode(s)), s, err));
        ipc::Message x = wire::encode(s);
        x.add(Tag::text, "now");
        CHECK_FALSE(decodes<wire::Stop>(std::move(x)));
    }
    {
        auto good = [] { return wire::encode(wire::LogLevel{"debug"}); };
        wire::LogLevel out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.level == "debug");
        refuses_generic<wire::LogLevel>(good, Tag::text);
        refuses_value<wire::LogLevel>(good, Tag::text, "loud");
    }
}

TEST_CASE("wire: resolver and admin messages") {
    std::string err;
    {
        auto good = [] { return wire::encode(wire::ResolveRequest{"example.com", 15}, 8); };
        wire::ResolveRequest out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.name == "example.com");
        CHECK(out.qtype == 15);
        refuses_generic<wire::ResolveRequest>(good, Tag::name);
        refuses_without<wire::ResolveRequest>(good, Tag::qtype);
        refuses_value<wire::ResolveRequest>(good, Tag::name, std::string(wire::kMaxDnsName + 1, 'n'));
        refuses_value<wire::ResolveRequest>(good, Tag::qtype, u64(65536));
    }
    {
        auto good = [] { return wire::encode(wire::ResolveReply{0, 1, "ok", {"10 mx.example.com.", std::string("\0\1", 2)}}, 8); };
        wire::ResolveReply out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.dnssec == 1);
        CHECK(out.text == "ok");
        REQUIRE(out.records.size() == 2);
        CHECK(out.records[1] == std::string("\0\1", 2));
        refuses_generic<wire::ResolveReply>(good, Tag::rcode);
        refuses_without<wire::ResolveReply>(good, Tag::rcode);
        refuses_value<wire::ResolveReply>(good, Tag::dnssec, u64(3));
        refuses_value<wire::ResolveReply>(good, Tag::record, std::string(wire::kMaxDnsRecordBytes + 1, 'r'));
        wire::ResolveReply many;
        many.records.assign(wire::kMaxDnsRecords + 1, "r");
        CHECK_FALSE(decodes<wire::ResolveReply>(wire::encode(many, 1)));
    }
    {
        auto good = [] { return wire::encode(wire::AdminRequest{"list --json", 1000, true}, 8); };
        wire::AdminRequest out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.text == "list --json");
        CHECK(out.uid == 1000);
        CHECK(out.privileged);
        refuses_generic<wire::AdminRequest>(good, Tag::uid);
        refuses_without<wire::AdminRequest>(good, Tag::privileged);
        refuses_value<wire::AdminRequest>(good, Tag::privileged, u64(2));
    }
    {
        auto good = [] { return wire::encode(wire::AdminReply{"line\n", true}, 8); };
        wire::AdminReply out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.text == "line\n");
        CHECK(out.more);
        refuses_generic<wire::AdminReply>(good, Tag::text);
        refuses_without<wire::AdminReply>(good, Tag::status);
        refuses_value<wire::AdminReply>(good, Tag::status, u64(2));
    }
}

TEST_CASE("wire: anvil messages") {
    std::string err;
    {
        auto good = [] { return wire::encode(wire::AnvilConnect{"192.0.2.7", "smtp"}, 5); };
        wire::AnvilConnect out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.client_addr == "192.0.2.7");
        CHECK(out.listen_kind == "smtp");
        refuses_generic<wire::AnvilConnect>(good, Tag::client_addr);
        refuses_without<wire::AnvilConnect>(good, Tag::listen_kind);
        refuses_value<wire::AnvilConnect>(good, Tag::listen_kind, "pop3");
        refuses_value<wire::AnvilConnect>(good, Tag::client_addr, std::string(wire::kMaxClientAddr + 1, '1'));
    }
    {
        auto good = [] { return wire::encode(wire::AnvilVerdict{2, 3, 4, 5}, 5); };
        wire::AnvilVerdict out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.status == 2);
        CHECK(out.concurrent == 3);
        CHECK(out.rate == 4);
        CHECK(out.auth_failures == 5);
        refuses_generic<wire::AnvilVerdict>(good, Tag::anvil_rate);
        refuses_without<wire::AnvilVerdict>(good, Tag::anvil_status);
        refuses_value<wire::AnvilVerdict>(good, Tag::anvil_status, u64(3));
    }
    {
        wire::AnvilDisconnect d;
        CHECK(wire::decode(over_the_wire(wire::encode(d, 5)), d, err));
        ipc::Message x = wire::encode(d, 5);
        x.add(Tag::client_addr, "1.2.3.4");
        CHECK_FALSE(decodes<wire::AnvilDisconnect>(std::move(x)));
    }
    {
        auto good = [] { return wire::encode(wire::AnvilAuthFail{"2001:db8::1"}, 5); };
        wire::AnvilAuthFail out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.client_addr == "2001:db8::1");
        refuses_generic<wire::AnvilAuthFail>(good, Tag::client_addr);
        refuses_value<wire::AnvilAuthFail>(good, Tag::client_addr, "");
    }
    {
        auto good = [] { return wire::encode(wire::AnvilAuthCount{"192.0.2.7", 4}, 5); };
        wire::AnvilAuthCount out;
        REQUIRE(wire::decode(over_the_wire(good()), out, err));
        CHECK(out.auth_failures == 4);
        refuses_generic<wire::AnvilAuthCount>(good, Tag::client_addr);
        refuses_without<wire::AnvilAuthCount>(good, Tag::anvil_auth_failures);
    }
}

TEST_CASE("wire: every tag has a name") {
    for (uint16_t t = 0; t < 128; t++) {
        const char* n = wire::tag_name(Tag(t));
        CHECK(n != nullptr);
    }
    CHECK(std::string(wire::tag_name(Tag::rcpt_orcpt)) == "rcpt_orcpt");
}

TEST_CASE("msgauth_request and msgauth_reply: round trip and strict refusals") {
    wire::MsgauthRequest req{7, "192.0.2.1", "client.example", "a@b.example", "", false, devnull()};
    ipc::Message m = over_the_wire(wire::encode(req, 3));
    wire::MsgauthRequest back;
    std::string err;
    REQUIRE(wire::decode(m, back, err));
    CHECK((back.msgid == 7 && back.client_addr == "192.0.2.1" && !back.trusted && back.body.valid()));
    ipc::Message nofd = wire::encode(req, 3);  // req.body was moved out: no fd
    CHECK_FALSE(decodes<wire::MsgauthRequest>(std::move(nofd)));

    wire::MsgauthReply ok;
    ok.prepend = "Authentication-Results: mx.example;\r\n\tdkim=pass header.d=example.org\r\n";
    ok.cuts = {{10, 5}, {20, 1}};
    wire::MsgauthReply r;
    REQUIRE(wire::decode(over_the_wire(wire::encode(ok, 1)), r, err));
    CHECK((r.prepend == ok.prepend && r.cuts == ok.cuts && r.action == ipc::MsgauthAction::accept));
    wire::MsgauthReply rej{ipc::MsgauthAction::reject, 550, "5.7.1", "Rejected per DMARC policy", "", {}};
    REQUIRE(wire::decode(over_the_wire(wire::encode(rej, 1)), r, err));
    CHECK((r.code == 550 && r.enhanced == "5.7.1"));
    wire::MsgauthReply hold{ipc::MsgauthAction::hold, 0, "", "DMARC policy quarantine for example.org",
                            "Authentication-Results: mx.example; dmarc=fail\r\n", {}};
    REQUIRE(wire::decode(over_the_wire(wire::encode(hold, 1)), r, err));
    CHECK((r.action == ipc::MsgauthAction::hold && r.code == 0 && r.text == hold.text && r.prepend == hold.prepend));

    auto refused = [](wire::MsgauthReply x) { return !decodes<wire::MsgauthReply>(wire::encode(x, 1)); };
    CHECK(refused({ipc::MsgauthAction::reject, 451, "", "wrong class", "", {}}));
    CHECK(refused({ipc::MsgauthAction::tempfail, 550, "", "wrong class", "", {}}));
    CHECK(refused({ipc::MsgauthAction::reject, 550, "4.7.1", "enhanced of the wrong class", "", {}}));
    CHECK(refused({ipc::MsgauthAction::hold, 0, "", "", "", {}}));  // hold without a reason
    ipc::Message hold_code = wire::encode(hold, 1);
    hold_code.add_u64(Tag::code, 250);
    CHECK_FALSE(decodes<wire::MsgauthReply>(std::move(hold_code)));  // hold carries no code
    refuses_value<wire::MsgauthReply>([&ok] { return wire::encode(ok, 1); }, Tag::msgauth_action, u64(4));
    CHECK(refused({ipc::MsgauthAction::accept, 0, "", "", "X-Injected: a\r\nb\r\n", {}}));  // not a field
    CHECK(refused({ipc::MsgauthAction::accept, 0, "", "", "X-Bare: a\nBcc: evil\r\n", {}}));
    CHECK(refused({ipc::MsgauthAction::accept, 0, "", "", "X-No-End: a", {}}));
    CHECK(refused({ipc::MsgauthAction::accept, 0, "", "", " continuation first\r\n", {}}));
    CHECK(refused({ipc::MsgauthAction::accept, 0, "", "", "", {{10, 5}, {12, 1}}}));  // overlapping
    CHECK(refused({ipc::MsgauthAction::accept, 0, "", "", "", {{10, 0}}}));           // empty
    CHECK(refused({ipc::MsgauthAction::accept, 0, "", "", "", {{UINT64_MAX, 2}}}));   // wraps
    ipc::Message with_code = wire::encode(ok, 1);
    with_code.add_u64(Tag::code, 250);
    CHECK_FALSE(decodes<wire::MsgauthReply>(std::move(with_code)));  // accept carries no code
    CHECK(wire::valid_header_block(""));
    CHECK(wire::valid_header_block("A: b\r\n c\r\nD:\r\n"));
    CHECK_FALSE(wire::valid_header_block("A: b\r\n \r\n"));  // a blank continuation would end the header
}
