// Unit tests for queue-manager/maildrop: the strict maildrop parser, LF->CRLF, -t address extraction
// and the headers sendmail adds or removes.
#include <doctest/doctest.h>

#include "queue-manager/maildrop.h"

using namespace mta::queue;

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

TEST_CASE("prepare_message: -t collects recipients, drops Bcc, adds missing headers") {
    PrepareOptions o;
    o.extract_rcpts = true;
    o.sender = "me@host";
    o.full_name = "Me Myself";
    o.date = "Thu, 01 Jan 1970 00:00:00 +0000";
    o.message_id = "<1@host>";
    auto p = prepare_message("To: a@x\r\nBcc: hidden@x,\r\n\tother@x\r\nSubject: s\r\n\r\nbody\r\n", o);
    CHECK(p.rcpts == std::vector<std::string>{"a@x", "hidden@x", "other@x"});
    CHECK(p.text.find("Bcc") == std::string::npos);
    CHECK(p.text.find("other@x") == std::string::npos);
    CHECK(p.text.find("From: \"Me Myself\" <me@host>\r\n") != std::string::npos);
    CHECK(p.text.find("Message-ID: <1@host>\r\n") != std::string::npos);
    CHECK(p.text.find("\r\n\r\nbody\r\n") != std::string::npos);
    o.extract_rcpts = false;
    p = prepare_message("From: x@y\r\nDate: d\r\nMessage-ID: <m>\r\nBcc: keep@x\r\n\r\nb\r\n", o);
    CHECK(p.rcpts.empty());
    CHECK(p.text == "From: x@y\r\nDate: d\r\nMessage-ID: <m>\r\nBcc: keep@x\r\n\r\nb\r\n");
    p = prepare_message("just a body line\r\n", o);  // no headers at all
    CHECK(p.text.find("From: \"Me Myself\" <me@host>\r\n") == 0);
    CHECK(p.text.find("\r\n\r\njust a body line\r\n") != std::string::npos);
}
