// Unit tests for the relay policy (every known trick, table-driven) and the Received: header.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>

#include <string>
#include <vector>

#include "smtpd/smtpd_policy.h"

using namespace mta;
using namespace mta::smtpd;

namespace {

Config test_config() {
    Config c;
    std::vector<ConfigError> errors;
    REQUIRE(parse_config("local_domains = localhost example.com\nrelay_domains = relay.test\n", "t", c, errors));
    return c;
}

struct Case {
    const char* path;   // as the client writes it after "RCPT TO:"
    bool trusted;       // client in mynetworks
    int code;           // expected reply code, 0 = accepted
    const char* enhanced;
};

}  // namespace

TEST_CASE("relay policy: table of tricks") {
    const Config cfg = test_config();
    const Case cases[] = {
        {"<user@localhost>", false, 0, ""},
        {"<User@EXAMPLE.com>", false, 0, ""},
        {"<Postmaster>", false, 0, ""},
        {"<postmaster@example.com>", false, 0, ""},
        {"<x@relay.test>", false, 0, ""},
        {"<user%remote.test@relay.test>", false, 554, "5.7.1"},  // routing via a relay domain
        {"<remote.test!user@relay.test>", false, 554, "5.7.1"},
        {"<\"user@remote.test\"@relay.test>", false, 554, "5.7.1"},
        {"<user%remote.test@relay.test>", true, 0, ""},          // trusted clients may
        {"<x@elsewhere.test>", false, 554, "5.7.1"},
        {"<x@elsewhere.test>", true, 0, ""},
        {"<x@sub.example.com>", false, 554, "5.7.1"},         // subdomains are not local
        {"<x@example.com.evil.test>", false, 554, "5.7.1"},
        {"<user%remote.test@example.com>", false, 550, "5.7.1"},  // percent hack
        {"<user%remote.test@example.com>", true, 550, "5.7.1"},
        {"<remote.test!user@example.com>", false, 550, "5.7.1"},  // bang path
        {"<\"user@remote.test\"@example.com>", false, 550, "5.7.1"},  // quoted user@remote
        {"<\"user@remote.test\"@localhost>", true, 550, "5.7.1"},
        {"<@example.com:user@remote.test>", false, 554, "5.7.1"},  // source route: real rcpt is remote
        {"<@localhost,@example.com:x@elsewhere.test>", false, 554, "5.7.1"},
        {"<user@[127.0.0.1]>", false, 554, "5.7.1"},          // literals are never local
        {"<user@[IPv6:::1]>", false, 554, "5.7.1"},
        {"<user@[127.0.0.1]>", true, 0, ""},
        {"<\".hidden\"@localhost>", false, 550, "5.1.1"},    // maildir_name refuses
        {"<\"a/b\"@localhost>", false, 550, "5.1.1"},
        {"<\"a b\"@localhost>", false, 550, "5.1.1"},
        {"<\"..\"@localhost>", false, 550, "5.1.1"},
    };
    for (const Case& c : cases) {
        CAPTURE(std::string(c.path));
        CAPTURE(c.trusted);
        addr::PathOptions o;
        o.allow_postmaster = true;
        addr::PathResult r = addr::parse_path(c.path, o);
        REQUIRE(r.ok);
        RcptVerdict v = check_recipient(r.mailbox, cfg, c.trusted);
        CHECK(v.reply.code == c.code);
        if (c.code) {
            CHECK(std::string(v.reply.enhanced) == c.enhanced);
            CHECK(v.reply.text.find('<') == 0);
        }
    }
}

TEST_CASE("relay policy: relay denied text names the address") {
    const Config cfg = test_config();
    addr::PathResult r = addr::parse_path("<x@elsewhere.test>", {});
    REQUIRE(r.ok);
    RcptVerdict v = check_recipient(r.mailbox, cfg, false);
    CHECK(v.reply.text == "<x@elsewhere.test>: Relay access denied");
}

TEST_CASE("qid format") {
    CHECK(format_qid(0x1a2b) == "0000000000001A2B");
    CHECK(format_qid(UINT64_MAX) == "FFFFFFFFFFFFFFFF");
}

TEST_CASE("Received: header format") {
    TraceInfo t;
    t.helo = "client.example";
    t.client_ip = "192.0.2.7";
    t.hostname = "mx.test";
    t.protocol = "ESMTP";
    t.msgid = 0xabc;
    t.single_rcpt = "user@localhost";
    t.when = 1795867200;
    CHECK(format_received(t) ==
          "Received: from client.example ([192.0.2.7])\r\n"
          "\tby mx.test with ESMTP id 0000000000000ABC\r\n"
          "\tfor <user@localhost>; Sat, 28 Nov 2026 12:00:00 +0000\r\n");
    t.single_rcpt.clear();
    t.client_ip = "2001:db8::1";
    t.client_ipv6 = true;
    t.protocol = "UTF8SMTP";
    CHECK(format_received(t) ==
          "Received: from client.example ([IPv6:2001:db8::1])\r\n"
          "\tby mx.test with UTF8SMTP id 0000000000000ABC;\r\n"
          "\tSat, 28 Nov 2026 12:00:00 +0000\r\n");
}

TEST_CASE("Received: header with TLS details (RFC 3848 protocol names come from the session)") {
    TraceInfo t;
    t.helo = "client.example";
    t.client_ip = "192.0.2.7";
    t.hostname = "mx.test";
    t.protocol = "ESMTPSA";
    t.tls_version = "TLSv1.3";
    t.tls_cipher = "TLS_AES_256_GCM_SHA384";
    t.tls_bits = 256;
    t.msgid = 0xabc;
    t.when = 1795867200;
    CHECK(format_received(t) ==
          "Received: from client.example ([192.0.2.7])\r\n"
          "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits))\r\n"
          "\tby mx.test with ESMTPSA id 0000000000000ABC;\r\n"
          "\tSat, 28 Nov 2026 12:00:00 +0000\r\n");
}

TEST_CASE("local_recipients: unknown local recipients refused 550 5.1.1, Postmaster always valid") {
    char tmpl[] = "/tmp/test_policy.XXXXXX";
    std::string dir = mkdtemp(tmpl);
    std::string path = dir + "/rcpt.lmdb", err;
    REQUIRE(table::write_table(path, {{"alice", "ok"}, {"bob@example.com", "ok"}}, 0644, err));
    auto t = table::Table::open(path, err);
    REQUIRE(t);
    Config cfg = test_config();
    auto verdict = [&](const char* path_text) {
        addr::PathOptions o;
        o.allow_postmaster = true;
        auto r = addr::parse_path(path_text, o);
        REQUIRE(r.ok);
        return check_recipient(r.mailbox, cfg, false, t.get());
    };
    CHECK(verdict("<alice@localhost>").reply.code == 0);
    CHECK(verdict("<ALICE@example.com>").reply.code == 0);        // local part listed for any local domain
    CHECK(verdict("<bob@example.com>").reply.code == 0);          // full address listed
    RcptVerdict v = verdict("<bob@localhost>");                   // bob only exists @example.com
    CHECK(v.reply.code == 550);
    CHECK(std::string(v.reply.enhanced) == "5.1.1");
    CHECK(verdict("<nobody@localhost>").reply.code == 550);
    CHECK(verdict("<Postmaster>").reply.code == 0);
    CHECK(verdict("<postmaster@localhost>").reply.code == 0);
    CHECK(verdict("<x@relay.test>").reply.code == 0);             // not local: table not consulted
    unlink(path.c_str());
    rmdir(dir.c_str());
}

TEST_CASE("aliases and virtual at RCPT: valid despite local_recipients, virtual domains, relay rules") {
    char tmpl[] = "/tmp/test_policy.XXXXXX";
    std::string dir = mkdtemp(tmpl), err;
    REQUIRE(table::write_table(dir + "/rcpt.lmdb", {{"alice", "ok"}}, 0644, err));
    REQUIRE(table::write_table(dir + "/aliases.lmdb", {{"staff", "alice, bob"}, {"fwd", "someone@far.test"}}, 0644, err));
    REQUIRE(table::write_table(dir + "/virtual.lmdb",
                               {{"info@example.org", "alice@localhost"}, {"example.org", "x"},
                                {"sales@far.test", "alice@localhost"}},
                               0644, err));
    auto rcpt = table::Table::open(dir + "/rcpt.lmdb", err);
    auto al = table::Table::open(dir + "/aliases.lmdb", err);
    auto vt = table::Table::open(dir + "/virtual.lmdb", err);
    REQUIRE((rcpt && al && vt));
    const Config cfg = test_config();
    const alias::Maps maps = alias::from_tables(vt.get(), al.get());
    auto verdict = [&](const char* text, bool trusted) {
        auto r = addr::parse_path(text, {});
        REQUIRE(r.ok);
        return check_recipient(r.mailbox, cfg, trusted, rcpt.get(), &maps);
    };
    RcptVerdict v = verdict("<Staff@localhost>", false);  // bob is not in local_recipients: aliases win
    CHECK(v.reply.code == 0);
    CHECK(v.expanded == std::vector<std::string>{"alice@localhost", "bob@localhost"});
    v = verdict("<fwd@example.com>", false);                // forwarding to a remote address is fine
    CHECK(v.reply.code == 0);
    CHECK(v.expanded == std::vector<std::string>{"someone@far.test"});
    v = verdict("<info@example.org>", false);               // virtual alias domain: no relay needed
    CHECK(v.reply.code == 0);
    CHECK(v.expanded == std::vector<std::string>{"alice@localhost"});
    for (bool trusted : {false, true}) {
        v = verdict("<nobody@example.org>", trusted);       // unknown there, even for relay clients
        CHECK(v.reply.code == 550);
        CHECK(std::string(v.reply.enhanced) == "5.1.1");
    }
    CHECK(verdict("<sales@far.test>", false).reply.code == 554);  // virtual does not open relaying
    v = verdict("<sales@far.test>", true);
    CHECK(v.expanded == std::vector<std::string>{"alice@localhost"});
    CHECK(verdict("<nobody@localhost>", false).reply.code == 550);
    CHECK(verdict("<alice@localhost>", false).expanded.empty());
    for (auto f : {"rcpt.lmdb", "aliases.lmdb", "virtual.lmdb"}) unlink((dir + "/" + f).c_str());
    rmdir(dir.c_str());
}

TEST_CASE("free space before DATA: SIZE on top of queue_minfree, never under 1.5 x message_size_limit") {
    const uint64_t limit = 1000;  // floor 1500
    CHECK(spool_has_room(1500, 0, 0, limit));
    CHECK_FALSE(spool_has_room(1499, 0, 0, limit));
    CHECK(spool_has_room(5000, 0, 5000, limit));
    CHECK_FALSE(spool_has_room(4999, 0, 5000, limit));
    CHECK(spool_has_room(5500, 500, 5000, limit));
    CHECK_FALSE(spool_has_room(5499, 500, 5000, limit));
    CHECK_FALSE(spool_has_room(1999, 1000, 1000, limit));  // SIZE counts even when minfree alone fits
    CHECK(spool_has_room(uint64_t(1) << 60, 10240000, uint64_t(1) << 50, 10240000));
}
