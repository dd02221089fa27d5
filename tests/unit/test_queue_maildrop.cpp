// Unit tests for common/wire/maildrop and queue-manager/sendmail/prepare: the strict maildrop parser, LF->CRLF, -t address extraction
// and the headers sendmail adds or removes.
#include <doctest/doctest.h>

#include "common/wire/maildrop.h"
#include "queue-manager/sendmail/prepare.h"

using namespace mta::sendmail;
using namespace mta::wire;

TEST_CASE("maildrop round trip") {
    Maildrop m;
    m.uid = 1000;
    m.sender = "alice@example.org";
    m.rcpts = {"bob@example.net", "carol@localhost"};
    m.body = "Subject: x\r\n\r\nhi\r\n";
    Maildrop out;
    std::string err;
    REQUIRE(parse_maildrop(encode_maildrop(m), out, err));
    CHECK(out.uid == 1000);
    CHECK(out.sender == m.sender);
    CHECK(out.rcpts == m.rcpts);
    CHECK(out.body == m.body);
    m.sender.clear();  // null sender
    REQUIRE(parse_maildrop(encode_maildrop(m), out, err));
    CHECK(out.sender.empty());
}

TEST_CASE("maildrop parser refuses bad files") {
    std::string err;
    Maildrop out;
    auto bad = [&](const std::string& s) { return !parse_maildrop(s, out, err); };
    CHECK(bad(""));
    CHECK(bad("MTA-MAILDROP 2\nU 1\nS a@b\nR c@d\n\nx\r\n"));
    CHECK(bad("MTA-MAILDROP 1\nU x\nS a@b\nR c@d\n\nx\r\n"));
    CHECK(bad("MTA-MAILDROP 1\nU 99999999999999999999999\nS a@b\nR c@d\n\nx\r\n"));
    CHECK(bad("MTA-MAILDROP 1\nU 1\nS a@b\n\nx\r\n"));                 // no recipients
    CHECK(bad("MTA-MAILDROP 1\nU 1\nS a@b\nR c d@e\n\nx\r\n"));        // space in address
    CHECK(bad("MTA-MAILDROP 1\nU 1\nS a@b\nR nodomain\n\nx\r\n"));
    CHECK(bad("MTA-MAILDROP 1\nU 1\nS a@b\nR c@d\n\nx\n"));            // bare LF
    CHECK(bad("MTA-MAILDROP 1\nU 1\nS a@b\nR c@d\n\nx\ry\r\n"));       // bare CR
    CHECK(bad(std::string("MTA-MAILDROP 1\nU 1\nS a@b\nR c@d\n\nx\0y\r\n", 30)));
    CHECK(bad("MTA-MAILDROP 1\nU 1\nS a@b\nR c@d\n\nno crlf at end"));
    CHECK(bad("MTA-MAILDROP 1\nU 1\nS a@b\nR c@\x01\n\nx\r\n"));
    CHECK(bad("MTA-MAILDROP 1\nU 1\nS a@b\nR c@d"));                   // truncated
    CHECK_FALSE(bad("MTA-MAILDROP 1\nU 1\nS a@b\nR c@d\n\n"));         // empty message is fine
}

TEST_CASE("line ends become CRLF; a lone dot ends input unless -i") {
    CHECK(to_crlf("a\nb\n", true) == "a\r\nb\r\n");
    CHECK(to_crlf("a\r\nb", true) == "a\r\nb\r\n");
    CHECK(to_crlf("a\rb\n", true) == "a\r\nb\r\n");
    CHECK(to_crlf("a\n.\nb\n", true) == "a\r\n");
    CHECK(to_crlf("a\n.\nb\n", false) == "a\r\n.\r\nb\r\n");
    CHECK(to_crlf("", true) == "");
}

TEST_CASE("address lists from To/Cc/Bcc") {
    using V = std::vector<std::string>;
    CHECK(header_addresses(" Bob <bob@x.org>, carol@y.org (Carol)") == V{"bob@x.org", "carol@y.org"});
    CHECK(header_addresses(" \"Doe, John\" <jd@z.org>") == V{"jd@z.org"});
    CHECK(header_addresses(" friends: a@b.c, d@e.f;") == V{"a@b.c", "d@e.f"});
    CHECK(header_addresses(" undisclosed-recipients:;") == V{});
    CHECK(header_addresses(" localuser") == V{"localuser"});
}

TEST_CASE("prepare_message: -t collects recipients, drops Bcc, adds a missing From:") {
    PrepareOptions o;
    o.extract_rcpts = true;
    o.sender = "me@host";
    o.full_name = "Me Myself";
    auto p = prepare_message("To: a@x\r\nBcc: hidden@x,\r\n\tother@x\r\nSubject: s\r\n\r\nbody\r\n", o);
    CHECK(p.rcpts == std::vector<std::string>{"a@x", "hidden@x", "other@x"});
    CHECK(p.text.find("Bcc") == std::string::npos);
    CHECK(p.text.find("other@x") == std::string::npos);
    CHECK(p.text.find("From: \"Me Myself\" <me@host>\r\n") != std::string::npos);
    CHECK(p.text.find("Message-ID:") == std::string::npos);  // the queue's job, at pickup
    CHECK(p.text.find("Date:") == std::string::npos);
    CHECK(p.text.find("\r\n\r\nbody\r\n") != std::string::npos);
    o.extract_rcpts = false;
    p = prepare_message("From: x@y\r\nDate: d\r\nMessage-ID: <m>\r\nBcc: keep@x\r\n\r\nb\r\n", o);
    CHECK(p.rcpts.empty());
    CHECK(p.text == "From: x@y\r\nDate: d\r\nMessage-ID: <m>\r\nBcc: keep@x\r\n\r\nb\r\n");
    p = prepare_message("just a body line\r\n", o);  // no headers at all
    CHECK(p.text.find("From: \"Me Myself\" <me@host>\r\n") == 0);
    CHECK(p.text.find("\r\n\r\njust a body line\r\n") != std::string::npos);
}

TEST_CASE("maildrop DSN lines: round trip, strict values and order") {
    Maildrop m;
    m.uid = 7;
    m.sender = "a@b";
    m.rcpts = {"c@d"};
    m.notify = 2 | 4;
    m.ret = 2;
    m.envid = "env-1+x";
    Maildrop out;
    std::string err;
    REQUIRE(parse_maildrop(encode_maildrop(m), out, err));
    CHECK(out.notify == 6);
    CHECK(out.ret == 2);
    CHECK(out.envid == "env-1+x");
    CHECK(encode_maildrop(out) == encode_maildrop(m));
    auto bad = [&](const std::string& mid) {
        return !parse_maildrop("MTA-MAILDROP 1\nU 1\nS a@b\n" + mid + "R c@d\n\nx\r\n", out, err);
    };
    CHECK_FALSE(bad("N 1\n"));            // never
    CHECK_FALSE(bad("N 14\nT FULL\nE e\n"));
    CHECK(bad("N 3\n"));                  // never with success
    CHECK(bad("N 0\n"));
    CHECK(bad("N 016\n"));
    CHECK(bad("N 16\n"));
    CHECK(bad("N x\n"));
    CHECK(bad("T full\n"));
    CHECK(bad("E \n"));
    CHECK(bad("E a b\n"));
    CHECK(bad("E " + std::string(101, 'e') + "\n"));
    CHECK(bad("T HDRS\nN 2\n"));          // out of order
    CHECK(bad("N 2\nN 2\n"));             // twice
}

TEST_CASE("prepare_message -t: Resent-To/Cc/Bcc win when there are Resent- headers") {
    PrepareOptions o;
    o.extract_rcpts = true;
    o.sender = "me@host";
    auto p = prepare_message("To: old@x\r\nResent-From: me@host\r\nResent-To: new@x\r\nResent-Bcc: rb@x\r\n"
                             "Bcc: ob@x\r\n\r\nb\r\n", o);
    CHECK(p.rcpts == std::vector<std::string>{"new@x", "rb@x"});
    CHECK(p.text.find("rb@x") == std::string::npos);
    CHECK(p.text.find("ob@x") == std::string::npos);
    CHECK(p.text.find("To: old@x\r\n") != std::string::npos);
    CHECK(p.text.find("Resent-To: new@x\r\n") != std::string::npos);
}
