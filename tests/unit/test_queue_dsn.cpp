// Unit tests for queue-manager/dsn: NOTIFY rules, RET choice, status extraction, header block, and the
// structure of the generated RFC 3464 report (sanitised remote text, ENVID/ORCPT echoed).
#include <doctest/doctest.h>

#include "common/protocol.h"
#include "queue-manager/dsn.h"

using namespace mta::queue;
namespace ipc = mta::ipc;

TEST_CASE("NOTIFY decides which DSNs are sent") {
    CHECK(notify_allows(0, DsnKind::failure));
    CHECK(notify_allows(0, DsnKind::delay));
    CHECK_FALSE(notify_allows(0, DsnKind::success));
    CHECK_FALSE(notify_allows(ipc::kNotifyNever, DsnKind::failure));
    CHECK_FALSE(notify_allows(ipc::kNotifyNever, DsnKind::delay));
    CHECK(notify_allows(ipc::kNotifySuccess, DsnKind::success));
    CHECK_FALSE(notify_allows(ipc::kNotifySuccess, DsnKind::failure));
    CHECK(notify_allows(ipc::kNotifyFailure | ipc::kNotifyDelay, DsnKind::delay));
    CHECK_FALSE(notify_allows(ipc::kNotifyFailure, DsnKind::delay));
}

TEST_CASE("RET=FULL and no RET return the message for failures only (Postfix); HDRS the headers") {
    MessageRecord m;
    m.size = 100;
    CHECK(return_full(m, DsnKind::failure));
    CHECK_FALSE(return_full(m, DsnKind::success));
    m.ret = 1;
    CHECK(return_full(m, DsnKind::failure));
    CHECK_FALSE(return_full(m, DsnKind::delay));
    m.size = kMaxReturnedBody + 1;
    CHECK_FALSE(return_full(m, DsnKind::failure));
    m.ret = 2;
    m.size = 10;
    CHECK_FALSE(return_full(m, DsnKind::failure));
}

TEST_CASE("status codes come from the reply text and agree with the outcome") {
    CHECK(status_code("550 5.1.1 no such user", DsnKind::failure) == "5.1.1");
    CHECK(status_code("5.7.1 denied", DsnKind::failure) == "5.7.1");
    CHECK(status_code("mx[1.2.3.4] said: 550 5.2.2 full (in reply to RCPT TO command)", DsnKind::failure) == "5.2.2");
    CHECK(status_code("message expired: 4.4.1 connect failed", DsnKind::failure) == "5.4.1");
    CHECK(status_code("whatever", DsnKind::failure) == "5.0.0");
    CHECK(status_code("451 4.3.0 later", DsnKind::delay) == "4.3.0");
    CHECK(status_code("", DsnKind::delay) == "4.0.0");
    CHECK(status_code("2.0.0 delivered to maildir", DsnKind::success) == "2.0.0");
    CHECK(status_code("550 5.1.1999 x", DsnKind::failure) == "5.0.0");
}

TEST_CASE("header block stops at the empty line") {
    CHECK(header_block("A: 1\r\nB: 2\r\n\r\nbody\r\n") == "A: 1\r\nB: 2\r\n");
    CHECK(header_block("A: 1\r\n") == "A: 1\r\n");
    CHECK(header_block("") == "");
}


TEST_CASE("a failure DSN is a well-formed multipart/report") {
    DsnInput in;
    in.kind = DsnKind::failure;
    in.hostname = "mx.example";
    in.orig_msgid = 0x12;
    in.dsn_msgid = 0x34;
    in.orig.sender = "alice@example.org";
    in.orig.envid = "ENV123";
    in.orig.arrival = 1700000000;
    RecipientRecord r;
    r.addr = "bob@example.net";
    r.orcpt = "rfc822;Bob@Example.NET";
    r.last_error = "550 5.1.1 <bob>: no such user \x1b[31m";
    r.last_attempt = 1700000100;
    in.rcpts.push_back(r);
    in.now = 1700000200;
    in.original = "Subject: hi\r\nFrom: alice@example.org\r\n";
    std::string d = build_dsn(in);
    CHECK(d.find("From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\n") == 0);
    CHECK(d.find("To: <alice@example.org>\r\n") != std::string::npos);
    CHECK(d.find("Content-Type: multipart/report; report-type=delivery-status;") != std::string::npos);
    CHECK(d.find("Reporting-MTA: dns; mx.example\r\n") != std::string::npos);
    CHECK(d.find("Original-Envelope-Id: ENV123\r\n") != std::string::npos);
    CHECK(d.find("Final-Recipient: rfc822; bob@example.net\r\n") != std::string::npos);
    CHECK(d.find("Original-Recipient: rfc822;Bob@Example.NET\r\n") != std::string::npos);
    CHECK(d.find("Action: failed\r\nStatus: 5.1.1\r\n") != std::string::npos);
    CHECK(d.find("Content-Type: text/rfc822-headers") != std::string::npos);
    CHECK(d.find("Subject: hi\r\n") != std::string::npos);
    CHECK(d.find('\x1b') == std::string::npos);  // remote text sanitised
    std::string boundary = "0000000000000034/mx.example";
    CHECK(d.find("--" + boundary + "--\r\n") != std::string::npos);
    // CRLF only, no line over 998 characters.
    std::size_t start = 0;
    while (start < d.size()) {
        std::size_t e = d.find("\r\n", start);
        REQUIRE(e != std::string::npos);
        CHECK(e - start <= 998);
        CHECK(d.substr(start, e - start).find('\n') == std::string::npos);
        start = e + 2;
    }
}

TEST_CASE("a delay DSN says delayed and when the queue gives up") {
    DsnInput in;
    in.kind = DsnKind::delay;
    in.hostname = "mx.example";
    in.orig.sender = "a@b";
    RecipientRecord r;
    r.addr = "c@d";
    r.last_error = "451 4.3.0 later";
    in.rcpts.push_back(r);
    in.retry_until = 1700000000;
    std::string d = build_dsn(in);
    CHECK(d.find("Action: delayed\r\nStatus: 4.3.0\r\n") != std::string::npos);
    CHECK(d.find("Will-Retry-Until: Tue, 14 Nov 2023 22:13:20 +0000") != std::string::npos);
    CHECK(d.find("Subject: Delayed Mail") != std::string::npos);
}

TEST_CASE("a remote reply becomes Remote-MTA and an smtp Diagnostic-Code; our own texts an X- type") {
    RemoteReply r = split_remote("mx.example[192.0.2.1] said: 550 5.1.1 <b@x>: no (in reply to RCPT TO command)");
    CHECK(r.mta == "mx.example");
    CHECK(r.diagnostic == "550 5.1.1 <b@x>: no");
    CHECK(r.smtp);
    r = split_remote("localhost[unix:/run/lmtp] said: 452 4.2.2 full");
    CHECK(r.mta == "localhost");
    CHECK(r.diagnostic == "452 4.2.2 full");
    r = split_remote("4.4.1 connect to 192.0.2.1:25: Connection refused");
    CHECK(r.mta.empty());
    CHECK_FALSE(r.smtp);
    CHECK(r.diagnostic == "4.4.1 connect to 192.0.2.1:25: Connection refused");
    r = split_remote("550 5.7.1 refused");
    CHECK(r.smtp);
    CHECK(split_remote("a b[c] said: 550 x").mta.empty());  // not our "host[addr] said:" shape

    DsnInput in;
    in.kind = DsnKind::failure;
    in.hostname = "mx.example";
    in.orig.sender = "a@example.org";
    RecipientRecord rc;
    rc.addr = "b@example.net";
    rc.last_error = "mx.example.net[192.0.2.1] said: 550 5.1.1 no such user (in reply to RCPT TO command)";
    in.rcpts.push_back(rc);
    rc.addr = "c@example.net";
    rc.last_error = "5.4.4 Host not found";
    in.rcpts.push_back(rc);
    std::string d = build_dsn(in);
    CHECK(d.find("Remote-MTA: dns; mx.example.net\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n") != std::string::npos);
    CHECK(d.find("Diagnostic-Code: X-mta; 5.4.4 Host not found\r\n") != std::string::npos);
}

TEST_CASE("success DSN: relayed when the next hop lacked DSN, delivered otherwise") {
    DsnInput in;
    in.kind = DsnKind::success;
    in.hostname = "mx.example";
    in.orig.sender = "a@example.org";
    RecipientRecord rc;
    rc.addr = "far@example.net";
    rc.flags = kRcptRelayed;
    in.rcpts.push_back(rc);
    rc.addr = "near@mx.example";
    rc.flags = 0;
    in.rcpts.push_back(rc);
    std::string d = build_dsn(in);
    CHECK(d.find("Final-Recipient: rfc822; far@example.net\r\nAction: relayed\r\nStatus: 2.0.0\r\n") != std::string::npos);
    CHECK(d.find("Final-Recipient: rfc822; near@mx.example\r\nAction: delivered\r\nStatus: 2.0.0\r\n") != std::string::npos);
}

TEST_CASE("an SMTPUTF8 message gets a global DSN (RFC 6533) with its UTF-8 addresses") {
    DsnInput in;
    in.kind = DsnKind::failure;
    in.hostname = "mx.example";
    in.orig.sender = "s\xc3\xa9nder@example.org";
    in.orig.smtputf8 = 1;
    RecipientRecord rc;
    rc.addr = "b\xc3\xb6" "b@example.net";
    rc.last_error = "550 5.1.1 no\xc3\xa9";
    in.rcpts.push_back(rc);
    in.full = true;
    in.original = "Subject: x\r\n\r\nbody\r\n";
    std::string d = build_dsn(in);
    CHECK(d.find("To: <s\xc3\xa9nder@example.org>\r\n") != std::string::npos);
    CHECK(d.find("report-type=global-delivery-status;") != std::string::npos);
    CHECK(d.find("Content-Type: message/global-delivery-status\r\n") != std::string::npos);
    CHECK(d.find("Final-Recipient: utf-8; b\xc3\xb6" "b@example.net\r\n") != std::string::npos);
    CHECK(d.find("Content-Type: message/global\r\n") != std::string::npos);
    CHECK(d.find("smtp; 550 5.1.1 no??\r\n") != std::string::npos);  // remote text stays ASCII
    in.full = false;
    CHECK(build_dsn(in).find("Content-Type: message/global-headers\r\n") != std::string::npos);
}
