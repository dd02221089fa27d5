// Unit tests for smtpd command framing, verb parsing and ESMTP parameters.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/protocol.h"
#include "smtpd/smtpd_command.h"

using namespace mta::smtpd;

namespace {

struct Cut {
    FrameKind kind;
    std::string line;
};

// Runs the framer over a whole buffer the way the session does.
std::vector<Cut> frame_all(std::string buf, std::size_t limit) {
    std::vector<Cut> out;
    bool discarding = false;
    while (true) {
        Frame f = next_command(buf, limit, discarding);
        std::string line(f.line);
        buf.erase(0, f.consumed);
        if (f.kind == FrameKind::need_more) {
            if (f.consumed == 0) break;
            continue;
        }
        out.push_back({f.kind, line});
    }
    return out;
}

}  // namespace

TEST_CASE("framer: CRLF lines, pipelined") {
    auto v = frame_all("EHLO a\r\nMAIL FROM:<>\r\nRCPT", 100);
    REQUIRE(v.size() == 2);
    CHECK(v[0].kind == FrameKind::line);
    CHECK(v[0].line == "EHLO a");
    CHECK(v[1].line == "MAIL FROM:<>");
}

TEST_CASE("framer: bare LF is reported, not a command") {
    auto v = frame_all("NOOP\nQUIT\r\n", 100);
    REQUIRE(v.size() == 2);
    CHECK(v[0].kind == FrameKind::bare_lf);
    CHECK(v[1].kind == FrameKind::line);
    CHECK(v[1].line == "QUIT");
    auto w = frame_all("\n", 100);
    REQUIRE(w.size() == 1);
    CHECK(w[0].kind == FrameKind::bare_lf);
}

TEST_CASE("framer: line length limit") {
    std::string ok(10, 'a');
    auto v = frame_all(ok + "\r\n", 10);
    REQUIRE(v.size() == 1);
    CHECK(v[0].kind == FrameKind::line);

    v = frame_all(std::string(11, 'a') + "\r\nNOOP\r\n", 10);
    REQUIRE(v.size() == 2);
    CHECK(v[0].kind == FrameKind::too_long);
    CHECK(v[1].line == "NOOP");

    // A very long line arriving in pieces: one too_long, the tail is discarded, then the next command.
    bool discarding = false;
    Frame f = next_command(std::string(50, 'x'), 10, discarding);
    CHECK(f.kind == FrameKind::too_long);
    CHECK(f.consumed == 12);
    CHECK(discarding);
    f = next_command(std::string(38, 'x'), 10, discarding);
    CHECK(f.kind == FrameKind::need_more);
    CHECK(f.consumed == 12);
    f = next_command("xx\r\nQUIT\r\n", 10, discarding);
    CHECK(f.kind == FrameKind::line);
    CHECK(f.line == "QUIT");
    CHECK(f.consumed == 10);
    CHECK_FALSE(discarding);
}

TEST_CASE("framer: incomplete line waits") {
    bool d = false;
    Frame f = next_command("MAIL FROM:<a@b>\r", 100, d);
    CHECK(f.kind == FrameKind::need_more);
    CHECK(f.consumed == 0);
}

TEST_CASE("verbs are case-insensitive and MAIL/RCPT need FROM:/TO:") {
    CHECK(parse_command("ehlo x").verb == Verb::ehlo);
    CHECK(parse_command("QuIt").verb == Verb::quit);
    CHECK(parse_command("STARTTLS").verb == Verb::starttls);
    CHECK(parse_command("FOO bar").verb == Verb::unknown);
    CHECK(parse_command("MAILFROM:<a@b>").verb == Verb::unknown);
    // Known but refused (502): old relay-turnaround and terminal-delivery verbs.
    for (const char* v : {"TURN", "etrn localhost", "ATRN a.example", "SEND FROM:<a@b>", "soml", "SAML FROM:<>"})
        CHECK(parse_command(v).verb == Verb::not_implemented);
    CHECK(parse_command("TURNX").verb == Verb::unknown);
    Command c = parse_command("mail from:<a@b> SIZE=10");
    CHECK(c.verb == Verb::mail);
    CHECK_FALSE(c.bad_syntax);
    CHECK(c.arg == "<a@b> SIZE=10");
    CHECK(parse_command("MAIL <a@b>").bad_syntax);
    Command spaced = parse_command("RCPT   TO:<x@y>");
    CHECK_FALSE(spaced.bad_syntax);
    CHECK(spaced.arg == "<x@y>");
    CHECK(parse_command("MAIL ").bad_syntax);
    c = parse_command("RCPT To:<x@y>");
    CHECK(c.verb == Verb::rcpt);
    CHECK(c.arg == "<x@y>");
    CHECK(parse_command("RCPT FROM:<x@y>").bad_syntax);
    CHECK(parse_command("DATA").arg.empty());
}

TEST_CASE("NUL and control bytes in a command are flagged") {
    CHECK(parse_command(std::string("NOOP\0x", 6)).bad_chars);
    CHECK(parse_command("MAIL FROM:<a@b>\rRCPT").bad_chars);
    CHECK(parse_command("NOOP \x1b[2J").bad_chars);
    CHECK_FALSE(parse_command("NOOP\tx").bad_chars);
    CHECK_FALSE(parse_command("RCPT TO:<\xc3\xa9@x>").bad_chars);
}

TEST_CASE("MAIL parameters") {
    MailParams p;
    CHECK_FALSE(parse_mail_params("", 1000, p));
    p = {};
    CHECK_FALSE(parse_mail_params("SIZE=999 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc+2Bdef", 1000, p));
    CHECK(p.size == 999);
    CHECK(p.body == BodyType::eight_bit);
    CHECK(p.smtputf8);
    CHECK(p.ret == Ret::hdrs);
    CHECK(p.envid == "abc+def");
    p = {};
    CHECK_FALSE(parse_mail_params("size=1  body=7bit", 1000, p));  // case and extra spaces
    p = {};
    Reply r = parse_mail_params("SIZE=1001", 1000, p);
    CHECK(r.code == 552);
    CHECK(std::string(r.enhanced) == "5.3.4");
    CHECK(parse_mail_params("SIZE=99999999999999999999999", 1000, p).code == 501);  // > 20 digits
    CHECK(parse_mail_params("SIZE=18446744073709551616", 1000, p).code == 552);   // saturates, no wrap
    CHECK(parse_mail_params("SIZE=abc", 1000, p).code == 501);
    CHECK(parse_mail_params("SIZE", 1000, p).code == 501);
    CHECK(parse_mail_params("SIZE=1 SIZE=2", 1000, p).code == 501);
    CHECK(parse_mail_params("BODY=BINARYMIME", 1000, p).code == 501);
    CHECK(parse_mail_params("SMTPUTF8=yes", 1000, p).code == 501);
    p = {};
    CHECK_FALSE(p.requiretls);
    CHECK_FALSE(parse_mail_params("requiretls", 1000, p));  // RFC 8689: keyword without value
    CHECK(p.requiretls);
    CHECK(parse_mail_params("REQUIRETLS=yes", 1000, p).code == 501);
    CHECK(parse_mail_params("REQUIRETLS REQUIRETLS", 1000, p).code == 501);
    CHECK(parse_mail_params("RET=ALL", 1000, p).code == 501);
    CHECK(parse_mail_params("ENVID=a+0Db", 1000, p).code == 501);   // CR after decoding
    CHECK(parse_mail_params("ENVID=a+0Ab", 1000, p).code == 501);   // LF
    CHECK(parse_mail_params("ENVID=a+00b", 1000, p).code == 501);   // NUL
    CHECK(parse_mail_params("ENVID=a+zz", 1000, p).code == 501);
    CHECK(parse_mail_params("ENVID=a+20b", 1000, p).code == 501);   // space
    CHECK(parse_mail_params("ENVID=" + std::string(101, 'a'), 1000, p).code == 501);
    r = parse_mail_params("XFOO=1", 1000, p);
    CHECK(r.code == 555);
    CHECK(std::string(r.enhanced) == "5.5.4");
    // AUTH= (RFC 4954 §5): xtext, decoded values with CR/LF/NUL refused, at most once.
    MailParams pa;
    CHECK(parse_mail_params("AUTH=<>", 1000, pa).code == 0);
    CHECK(pa.auth == "<>");
    MailParams pb;
    CHECK(parse_mail_params("AUTH=alice+40example.org", 1000, pb).code == 0);
    CHECK(pb.auth == "alice@example.org");
    for (const char* bad : {"AUTH=a+0Db", "AUTH=a+0Ab", "AUTH=a+00b", "AUTH", "AUTH=<> AUTH=<>"}) {
        MailParams pc;
        CHECK(parse_mail_params(bad, 1000, pc).code == 501);
    }
    CHECK(parse_mail_params("=1", 1000, p).code == 501);
    CHECK(parse_mail_params("SIZE=", 1000, p).code == 501);
    CHECK(parse_mail_params("SIZE=1=2", 1000, p).code == 501);
}

TEST_CASE("RCPT parameters") {
    using namespace mta::ipc;
    RcptParams p;
    CHECK_FALSE(parse_rcpt_params("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+40example.com", p));
    CHECK(p.notify == (kNotifySuccess | kNotifyFailure));
    CHECK(p.orcpt == "rfc822;user@example.com");
    p = {};
    CHECK_FALSE(parse_rcpt_params("notify=never", p));
    CHECK(p.notify == kNotifyNever);
    p = {};
    CHECK(parse_rcpt_params("NOTIFY=NEVER,DELAY", p).code == 501);
    CHECK(parse_rcpt_params("NOTIFY=SOMETIMES", p).code == 501);
    CHECK(parse_rcpt_params("NOTIFY=", p).code == 501);
    CHECK(parse_rcpt_params("NOTIFY=SUCCESS,", p).code == 501);
    CHECK(parse_rcpt_params("ORCPT=rfc822", p).code == 501);
    CHECK(parse_rcpt_params("ORCPT=;a@b", p).code == 501);
    CHECK(parse_rcpt_params("ORCPT=rfc822;a+0D+0Ab", p).code == 501);
    CHECK(parse_rcpt_params("ORCPT=rfc822;", p).code == 501);
    CHECK(parse_rcpt_params("ORCPT=rf/c;a", p).code == 501);
    CHECK(parse_rcpt_params("FOO=BAR", p).code == 555);
}

TEST_CASE("BDAT arguments") {
    auto b = parse_bdat("100");
    REQUIRE(b);
    CHECK(b->size == 100);
    CHECK_FALSE(b->last);
    b = parse_bdat("0 last");
    REQUIRE(b);
    CHECK(b->size == 0);
    CHECK(b->last);
    CHECK_FALSE(parse_bdat(""));
    CHECK_FALSE(parse_bdat("-1"));
    CHECK_FALSE(parse_bdat("10 LASTX"));
    CHECK_FALSE(parse_bdat("10  LAST"));
    CHECK_FALSE(parse_bdat("99999999999999999999"));
    CHECK_FALSE(parse_bdat("1 LAST extra"));
}
