// Unit tests for smtp-client/smtp_reply: the reply parser, EHLO keywords, sanitizing, result mapping.
#include <doctest/doctest.h>

#include <string>

#include "smtp-client/smtp_reply.h"

using namespace mta::smtp;
using mta::ipc::DeliveryStatus;

TEST_CASE("smtp reply: single and multiline") {
    Reply r;
    auto res = parse_reply("250 ok\r\nextra", r);
    CHECK(res.status == ParseStatus::complete);
    CHECK(res.consumed == 8);
    CHECK(r.code == 250);
    CHECK(r.lines == std::vector<std::string>{"ok"});

    res = parse_reply("250-a\r\n250-b\r\n250 c\r\n", r);
    CHECK(res.status == ParseStatus::complete);
    CHECK(r.lines.size() == 3);
    CHECK(r.full() == "250 a b c");
    CHECK(r.summary() == "250 a");
}

TEST_CASE("smtp reply: bare code, bare LF, incomplete") {
    Reply r;
    CHECK(parse_reply("250\r\n", r).status == ParseStatus::complete);
    CHECK(r.code == 250);
    CHECK(r.lines.size() == 1);
    CHECK(parse_reply("220 hi\n", r).status == ParseStatus::complete);
    CHECK(parse_reply("250-a\r\n250 b", r).status == ParseStatus::incomplete);
    CHECK(parse_reply("25", r).status == ParseStatus::incomplete);
    CHECK(parse_reply("", r).status == ParseStatus::incomplete);
}

TEST_CASE("smtp reply: errors") {
    Reply r;
    CHECK(parse_reply("abc ok\r\n", r).status == ParseStatus::error);
    CHECK(parse_reply("25x ok\r\n", r).status == ParseStatus::error);
    CHECK(parse_reply("150 ok\r\n", r).status == ParseStatus::error);
    CHECK(parse_reply("650 ok\r\n", r).status == ParseStatus::error);
    CHECK(parse_reply("250_ok\r\n", r).status == ParseStatus::error);
    CHECK(parse_reply("2500 ok\r\n", r).status == ParseStatus::error);  // four digits
    CHECK(parse_reply("25 ok\r\n", r).status == ParseStatus::error);    // two digits
    CHECK(parse_reply("25\r\n", r).status == ParseStatus::error);
    CHECK(parse_reply("250-a\r\n251 b\r\n", r).status == ParseStatus::error);
    CHECK(parse_reply("\r\n", r).status == ParseStatus::error);
    std::string longline = "250 " + std::string(kMaxReplyLine + 10, 'x');
    CHECK(parse_reply(longline, r).status == ParseStatus::error);  // no LF yet, but already too long
    CHECK(parse_reply(longline + "\r\n", r).status == ParseStatus::error);
    std::string many;
    for (std::size_t i = 0; i < kMaxReplyLines + 1; i++) many += "250-x\r\n";
    CHECK(parse_reply(many, r).status == ParseStatus::error);
    std::string big;
    while (big.size() <= kMaxReplyBytes) big += "250-" + std::string(200, 'y') + "\r\n";
    CHECK(parse_reply(big, r).status == ParseStatus::error);
}

TEST_CASE("smtp reply: a line of exactly the cap is fine") {
    Reply r;
    std::string line = "250 " + std::string(kMaxReplyLine - 4, 'x') + "\r\n";
    CHECK(parse_reply(line, r).status == ParseStatus::complete);
}

TEST_CASE("smtp reply: sanitize") {
    CHECK(sanitize("a\r\nb\0c"
                   "\x1b[31m",
                   100) == "a b");
    CHECK(sanitize(std::string("a\0b", 3)) == "a b");
    CHECK(sanitize("  lead  trail  ") == "lead trail");
    CHECK(sanitize("\xc3\xa9") == "??");
    CHECK(sanitize(std::string(1000, 'z')).size() == kMaxResultText);
}

TEST_CASE("smtp reply: status mapping") {
    CHECK(status_for_code(250) == DeliveryStatus::delivered);
    CHECK(status_for_code(251) == DeliveryStatus::delivered);
    CHECK(status_for_code(421) == DeliveryStatus::deferred);
    CHECK(status_for_code(452) == DeliveryStatus::deferred);
    CHECK(status_for_code(550) == DeliveryStatus::bounced);
    CHECK(status_for_code(354) == DeliveryStatus::deferred);
    CHECK(status_for_code(0) == DeliveryStatus::deferred);
}

TEST_CASE("smtp reply: EHLO extensions") {
    Reply r;
    REQUIRE(parse_reply("250-mx.example hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8bitmime\r\n"
                        "250-DSN\r\n250-STARTTLS\r\n250-SMTPUTF8\r\n250-chunking\r\n250 ENHANCEDSTATUSCODES\r\n",
                        r)
                .status == ParseStatus::complete);
    Extensions e = parse_ehlo(r);
    CHECK(e.pipelining);
    CHECK(e.size);
    CHECK(e.size_limit == 10240000);
    CHECK(e.eightbitmime);
    CHECK(e.dsn);
    CHECK(e.starttls);
    CHECK(e.smtputf8);
    CHECK(e.enhanced);
    CHECK_FALSE(e.requiretls);
    CHECK(e.chunking);

    REQUIRE(parse_reply("250-host PIPELINING\r\n250 SIZE junk\r\n", r).status == ParseStatus::complete);
    e = parse_ehlo(r);
    CHECK_FALSE(e.pipelining);  // the greeting line is not a keyword
    CHECK_FALSE(e.chunking);
    CHECK(e.size);
    CHECK(e.size_limit == 0);
}
