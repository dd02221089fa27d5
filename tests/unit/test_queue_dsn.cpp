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

TEST_CASE("RET=FULL returns the message for failures only; default is headers") {
    MessageRecord m;
    m.size = 100;
    CHECK_FALSE(return_full(m, DsnKind::failure));
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

TEST_CASE("dates are RFC 5322 in UTC") {
    CHECK(rfc5322_date(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
    CHECK(rfc5322_date(1700000000) == "Tue, 14 Nov 2023 22:13:20 +0000");
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
