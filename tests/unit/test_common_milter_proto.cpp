// Unit tests for common/milter_proto: every command packet against bytes written out by hand from the
// protocol description, every reply type through the stream decoder fed in every possible split, the
// field checks (header injection, reply text injection, addresses, macro lists) and the packet limits
// against hostile milters, and option negotiation as Sendmail does it.
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/milter_proto.h"

using namespace mta::milter;
using namespace std::literals;
using Status = ReplyDecoder::Status;

namespace {

// A reply packet: the length (code + data) big endian, the code, the data.
std::string pk(char code, std::string_view data = {}) {
    uint32_t n = static_cast<uint32_t>(data.size() + 1);
    std::string out{char(n >> 24), char(n >> 16), char(n >> 8), char(n), code};
    return out.append(data);
}

struct Decoded {
    std::vector<Reply> replies;
    std::string error;
    std::size_t consumed = 0;
};

// Feeds `stream` to one decoder in the given pieces, taking every reply out as it completes.
Decoded feed(std::string_view stream, const std::vector<std::size_t>& cuts, Limits limits = {}) {
    ReplyDecoder d(limits);
    Decoded out;
    std::size_t pos = 0;
    for (std::size_t i = 0; i <= cuts.size(); i++) {
        std::size_t end = i < cuts.size() ? cuts[i] : stream.size();
        std::string_view piece = stream.substr(pos, end - pos);
        for (;;) {
            Reply r;
            Status s = d.next(piece, r);
            if (s == Status::reply) {
                out.replies.push_back(r);
                continue;
            }
            if (s == Status::error) {
                out.error = d.error();
                out.consumed = end - piece.size();
                return out;
            }
            CHECK(piece.empty());
            break;
        }
        pos = end;
    }
    out.consumed = stream.size();
    return out;
}

Decoded whole(std::string_view stream, Limits limits = {}) { return feed(stream, {}, limits); }

Decoded in_steps(std::string_view stream, std::size_t step) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = step; i < stream.size(); i += step) cuts.push_back(i);
    return feed(stream, cuts);
}

// The error of a stream that must fail ("" when it did not).
std::string error_of(std::string_view stream, Limits limits = {}) { return whole(stream, limits).error; }

Reply bare(char code) {
    Reply r;
    r.code = code;
    return r;
}

Reply header_reply(char code, uint32_t index, std::string name, std::string value) {
    Reply r = bare(code);
    r.index = index;
    r.name = std::move(name);
    r.value = std::move(value);
    return r;
}

Reply address_reply(char code, std::string address, std::string args = "") {
    Reply r = bare(code);
    r.address = std::move(address);
    r.args = std::move(args);
    return r;
}

Reply replycode(std::string text) {
    std::string err;
    Reply r;
    text += '\0';
    if (!parse_reply(SMFIR_REPLYCODE, text, r, err)) r.name = "error: " + err;
    return r;
}

}  // namespace

// ---- commands

TEST_CASE("milter: command packets byte for byte") {
    CHECK(cmd::optneg(6, SMFIF_ALL, SMFIP_ALL) ==
          "\x00\x00\x00\x0d" "O" "\x00\x00\x00\x06" "\x00\x00\x01\xff" "\x00\x1f\xff\xff"sv);
    CHECK(cmd::optneg(2, 0, 0) == "\x00\x00\x00\x0d" "O" "\x00\x00\x00\x02" "\x00\x00\x00\x00" "\x00\x00\x00\x00"sv);

    CHECK(cmd::macro(SMFIC_CONNECT, {{"j", "mx.example"}, {"{daemon_name}", "mta"}}) ==
          "\x00\x00\x00\x21" "D" "C" "j\0mx.example\0" "{daemon_name}\0mta\0"sv);
    CHECK(cmd::macro(SMFIC_MAIL, {}) == "\x00\x00\x00\x02" "D" "M"sv);
    CHECK(cmd::macro(SMFIC_RCPT, {{"{rcpt_addr}", ""}}) == "\x00\x00\x00\x0f" "D" "R" "{rcpt_addr}\0\0"sv);

    CHECK(cmd::connect("mail.example", SMFIA_INET, 25, "192.0.2.1") ==
          "\x00\x00\x00\x1b" "C" "mail.example\0" "4" "\x00\x19" "192.0.2.1\0"sv);
    CHECK(cmd::connect("host6.example", SMFIA_INET6, 587, "2001:db8::25") ==
          "\x00\x00\x00\x1f" "C" "host6.example\0" "6" "\x02\x4b" "2001:db8::25\0"sv);
    CHECK(cmd::connect("localhost", SMFIA_UNIX, 0, "/run/mta.sock") ==
          "\x00\x00\x00\x1c" "C" "localhost\0" "L" "\x00\x00" "/run/mta.sock\0"sv);
    // Unknown family: the host name and the family only, no port, no address.
    CHECK(cmd::connect("unknown", SMFIA_UNKNOWN, 25, "ignored") == "\x00\x00\x00\x0a" "C" "unknown\0" "U"sv);
    CHECK(cmd::connect("[192.0.2.1]", SMFIA_INET, 65535, "192.0.2.1") ==
          "\x00\x00\x00\x1a" "C" "[192.0.2.1]\0" "4" "\xff\xff" "192.0.2.1\0"sv);

    CHECK(cmd::helo("client.example") == "\x00\x00\x00\x10" "H" "client.example\0"sv);
    CHECK(cmd::mail({"<alice@example.com>", "SIZE=1000", "BODY=8BITMIME"}) ==
          "\x00\x00\x00\x2d" "M" "<alice@example.com>\0" "SIZE=1000\0" "BODY=8BITMIME\0"sv);
    CHECK(cmd::mail({"<>"}) == "\x00\x00\x00\x04" "M" "<>\0"sv);
    CHECK(cmd::rcpt({"<bob@example.net>", "NOTIFY=NEVER"}) ==
          "\x00\x00\x00\x20" "R" "<bob@example.net>\0" "NOTIFY=NEVER\0"sv);
    CHECK(cmd::data() == "\x00\x00\x00\x01" "T"sv);
    CHECK(cmd::header("Subject", "hello") == "\x00\x00\x00\x0f" "L" "Subject\0" "hello\0"sv);
    // A folded value goes out with a bare LF, as Sendmail and Postfix send it.
    CHECK(cmd::header("X-Folded", "a\r\n\tb") == "\x00\x00\x00\x0f" "L" "X-Folded\0" "a\n\tb\0"sv);
    CHECK(cmd::header("X-Empty", "") == "\x00\x00\x00\x0a" "L" "X-Empty\0" "\0"sv);
    CHECK(cmd::eoh() == "\x00\x00\x00\x01" "N"sv);
    CHECK(cmd::body("line\r\n") == "\x00\x00\x00\x07" "B" "line\r\n"sv);
    CHECK(cmd::body("") == "\x00\x00\x00\x01" "B"sv);
    CHECK(cmd::bodyeob() == "\x00\x00\x00\x01" "E"sv);
    CHECK(cmd::abort() == "\x00\x00\x00\x01" "A"sv);
    CHECK(cmd::quit() == "\x00\x00\x00\x01" "Q"sv);
    CHECK(cmd::quit_nc() == "\x00\x00\x00\x01" "K"sv);
    CHECK(cmd::unknown("XFOO bar") == "\x00\x00\x00\x0a" "U" "XFOO bar\0"sv);
}

TEST_CASE("milter: a NUL inside a string ends it, so the packet stays well-formed") {
    CHECK(cmd::helo("a\0b"sv) == "\x00\x00\x00\x03" "H" "a\0"sv);
    CHECK(cmd::header("X\0Y"sv, "v\0w"sv) == "\x00\x00\x00\x05" "L" "X\0" "v\0"sv);
    CHECK(cmd::rcpt({std::string("<a\0b>", 5)}) == "\x00\x00\x00\x04" "R" "<a\0"sv);
}

TEST_CASE("milter: body chunks of at most 65535 bytes") {
    CHECK(body_chunks("").empty());
    std::string body(2 * kBodyChunk + 1, 'x');
    body[kBodyChunk] = 'y';
    auto chunks = body_chunks(body);
    REQUIRE(chunks.size() == 3);
    CHECK(chunks[0].size() == kBodyChunk);
    CHECK(chunks[1].size() == kBodyChunk);
    CHECK(chunks[1][0] == 'y');
    CHECK(chunks[2] == "x");
    std::string p = cmd::body(chunks[0]);
    CHECK(p.substr(0, 5) == "\x00\x01\x00\x00" "B"sv);
    CHECK(p.size() == 5 + kBodyChunk);
    CHECK(body_chunks(std::string(kBodyChunk, 'z')).size() == 1);
}

// ---- replies

namespace {

// One of every reply type, as a stream, and what it decodes to.
struct Sample {
    std::string stream;
    std::vector<Reply> replies;
};

Sample all_replies() {
    Sample s;
    auto add = [&](const std::string& bytes, Reply r) {
        s.stream += bytes;
        s.replies.push_back(std::move(r));
    };
    Reply neg = bare(SMFIC_OPTNEG);
    neg.version = 6;
    neg.actions = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_SETSYMLIST;
    neg.protocol = SMFIP_NOCONNECT | SMFIP_NR_HDR | SMFIP_SKIP;
    neg.symlists = {{SMFIM_HELO, {"j", "{my}"}}, {SMFIM_ENVRCPT, {"{rcpt_addr}", "{rcpt_host}"}}, {SMFIM_EOM, {}}};
    add(pk('O', "\x00\x00\x00\x06" "\x00\x00\x01\x11" "\x00\x00\x04\x81"
                "\x00\x00\x00\x01" "j {my}\0"
                "\x00\x00\x00\x03" "{rcpt_addr},{rcpt_host}\0"
                "\x00\x00\x00\x05" "\0"sv),
        neg);
    Reply sym = bare(SMFIR_SETSYMLIST);
    sym.symlists = {{SMFIM_DATA, {"i"}}};
    add(pk('l', "\x00\x00\x00\x04" "i\0"sv), sym);
    for (char c : {SMFIR_CONTINUE, SMFIR_ACCEPT, SMFIR_DISCARD, SMFIR_REJECT, SMFIR_TEMPFAIL, SMFIR_PROGRESS,
                   SMFIR_SKIP, SMFIR_SHUTDOWN, SMFIR_CONN_FAIL})
        add(pk(c), bare(c));
    Reply code = bare(SMFIR_REPLYCODE);
    code.smtp_code = 550;
    code.lines = {"550 5.7.1 Spam message rejected"};
    add(pk('y', "550 5.7.1 Spam message rejected\0"sv), code);
    code.smtp_code = 451;
    code.lines = {"451-4.7.1 first line", "451-4.7.1 100% sure", "451 4.7.1 last line"};
    add(pk('y', "451-4.7.1 first line\r\n451-4.7.1 100%% sure\r\n451 4.7.1 last line\0"sv), code);
    add(pk('h', "X-Spam-Status\0No, score=0.1\0"sv), header_reply(SMFIR_ADDHEADER, 0, "X-Spam-Status", "No, score=0.1"));
    add(pk('h', "DKIM-Signature\0v=1; a=rsa-sha256;\n\tb=abc\n def\0"sv),
        header_reply(SMFIR_ADDHEADER, 0, "DKIM-Signature", "v=1; a=rsa-sha256;\r\n\tb=abc\r\n def"));
    add(pk('i', "\x00\x00\x00\x00" "Authentication-Results\0mx.example; dkim=pass\0"sv),
        header_reply(SMFIR_INSHEADER, 0, "Authentication-Results", "mx.example; dkim=pass"));
    add(pk('m', "\x00\x00\x00\x02" "Subject\0[SPAM] hi\0"sv), header_reply(SMFIR_CHGHEADER, 2, "Subject", "[SPAM] hi"));
    add(pk('m', "\x00\x00\x00\x01" "X-Mailer\0\0"sv), header_reply(SMFIR_CHGHEADER, 1, "X-Mailer", ""));
    add(pk('+', "<new@example.org>\0"sv), address_reply(SMFIR_ADDRCPT, "<new@example.org>"));
    add(pk('2', "<par@example.org>\0NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;par@example.org\0"sv),
        address_reply(SMFIR_ADDRCPT_PAR, "<par@example.org>", "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;par@example.org"));
    add(pk('2', "<bare@example.org>\0"sv), address_reply(SMFIR_ADDRCPT_PAR, "<bare@example.org>"));
    add(pk('-', "<old@example.org>\0"sv), address_reply(SMFIR_DELRCPT, "<old@example.org>"));
    add(pk('e', "<>\0"sv), address_reply(SMFIR_CHGFROM, "<>"));
    add(pk('e', "<bounce@example.org>\0SIZE=100\0"sv), address_reply(SMFIR_CHGFROM, "<bounce@example.org>", "SIZE=100"));
    Reply body = bare(SMFIR_REPLBODY);
    body.body = "new body\r\n\0binary \xff\r\n"s;
    add(pk('b', body.body), body);
    body.body = "";
    add(pk('b'), body);
    Reply q = bare(SMFIR_QUARANTINE);
    q.reason = "virus found: Eicar-Test-Signature";
    add(pk('q', "virus found: Eicar-Test-Signature\0"sv), q);
    return s;
}

}  // namespace

TEST_CASE("milter: every reply type decoded") {
    Sample s = all_replies();
    Decoded d = whole(s.stream);
    CHECK(d.error == "");
    REQUIRE(d.replies.size() == s.replies.size());
    for (std::size_t i = 0; i < s.replies.size(); i++) {
        INFO("reply " << i << " " << reply_name(s.replies[i].code));
        CHECK(d.replies[i] == s.replies[i]);
    }
}

TEST_CASE("milter: the decoder gives the same replies however the stream is split") {
    Sample s = all_replies();
    for (std::size_t step = 1; step <= 64; step++) {
        INFO("step " << step);
        Decoded d = in_steps(s.stream, step);
        CHECK(d.error == "");
        CHECK(d.replies == s.replies);
    }
    for (std::size_t cut = 0; cut <= s.stream.size(); cut++) {
        INFO("cut at " << cut);
        Decoded d = feed(s.stream, {cut});
        CHECK(d.error == "");
        CHECK(d.replies == s.replies);
    }
}

TEST_CASE("milter: one reply at a time; the bytes after it stay with the caller") {
    std::string stream = pk('h', "X-A\0one\0"sv) + pk('c') + "\x00\x00"s;
    ReplyDecoder d;
    std::string_view in = stream;
    Reply r;
    CHECK(d.idle());
    REQUIRE(d.next(in, r) == Status::reply);
    CHECK(r.code == SMFIR_ADDHEADER);
    CHECK(in.size() == 5 + 2);
    REQUIRE(d.next(in, r) == Status::reply);
    CHECK(r == bare(SMFIR_CONTINUE));
    CHECK(d.idle());
    CHECK(d.next(in, r) == Status::need_more);
    CHECK(in.empty());
    CHECK(!d.idle());  // half a length field: an EOF now cuts a reply
}

TEST_CASE("milter: header names and values") {
    auto value = [](std::string_view v) {
        Reply r;
        std::string err;
        std::string data = "X-Test\0"s.append(v).append(1, '\0');
        return parse_reply(SMFIR_ADDHEADER, data, r, err) ? r.value : "error: " + err;
    };
    CHECK(value("plain") == "plain");
    CHECK(value("") == "");
    CHECK(value(" leading space kept") == " leading space kept");
    CHECK(value("tab\tinside") == "tab\tinside");
    CHECK(value("utf-8 \xc3\xa9t\xc3\xa9") == "utf-8 \xc3\xa9t\xc3\xa9");
    CHECK(value("a\n\tb") == "a\r\n\tb");
    CHECK(value("a\r\n b\n  c") == "a\r\n b\r\n  c");
    CHECK(value("\n\tstarts folded") == "\r\n\tstarts folded");
    // Injection: a line break that is not a fold would start a header of the milter's choosing, or the body.
    CHECK(value("a\nBcc: victim@example.org") == "error: SMFIR_ADDHEADER: line break in header value without fold");
    CHECK(value("a\r\nBcc: victim@example.org") == "error: SMFIR_ADDHEADER: line break in header value without fold");
    CHECK(value("a\n") == "error: SMFIR_ADDHEADER: line break in header value without fold");
    CHECK(value("a\n\n\tb") == "error: SMFIR_ADDHEADER: line break in header value without fold");
    CHECK(value("a\n \nb") == "error: SMFIR_ADDHEADER: header value with a blank continuation line");
    CHECK(value("a\n\t") == "error: SMFIR_ADDHEADER: header value with a blank continuation line");
    CHECK(value("a\rb") == "error: SMFIR_ADDHEADER: bare CR in header value");
    CHECK(value("a\r") == "error: SMFIR_ADDHEADER: bare CR in header value");
    CHECK(value("a\r \tb") == "error: SMFIR_ADDHEADER: bare CR in header value");
    CHECK(value("bell\a") == "error: SMFIR_ADDHEADER: control byte in header value");
    CHECK(value("del\x7f") == "error: SMFIR_ADDHEADER: control byte in header value");

    auto name_ok = [](std::string_view n) {
        Reply r;
        std::string err;
        return parse_reply(SMFIR_ADDHEADER, std::string(n).append("\0v\0"sv), r, err);
    };
    CHECK(name_ok("X-Spam-Flag"));
    CHECK(name_ok("!#$%&'*+-.^_`|~"));
    CHECK(name_ok(std::string(kMaxHeaderName, 'X')));
    CHECK(!name_ok(""));
    CHECK(!name_ok("X Spam"));
    CHECK(!name_ok("X:Spam"));
    CHECK(!name_ok("Subject:"));
    CHECK(!name_ok("X\tY"));
    CHECK(!name_ok("X\nBcc"));
    CHECK(!name_ok("X\x7f"));
    CHECK(!name_ok("X-\xc3\xa9"));
    CHECK(!name_ok(std::string(kMaxHeaderName + 1, 'X')));
}

TEST_CASE("milter: REPLYCODE text") {
    CHECK(replycode("550 5.7.1 Rejected").lines == std::vector<std::string>{"550 5.7.1 Rejected"});
    CHECK(replycode("550 5.7.1 Rejected").smtp_code == 550);
    CHECK(replycode("421 4.7.0 Try later").smtp_code == 421);
    // libmilter's smfi_setreply without an enhanced code, and without text.
    CHECK(replycode("554 Go away").lines == std::vector<std::string>{"554 Go away"});
    CHECK(replycode("550 ").lines == std::vector<std::string>{"550 "});
    CHECK(replycode("550").lines == std::vector<std::string>{"550"});
    CHECK(replycode("550-\r\n550 x").lines == std::vector<std::string>{"550-", "550 x"});
    CHECK(replycode("550-a\r\n550").lines == std::vector<std::string>{"550-a", "550"});
    CHECK(replycode("550 5.7.1 tab\there").smtp_code == 550);
    // '%' as Sendmail reads it: "%%" is one '%', a lone '%' is dropped.
    CHECK(replycode("550 100%% spam").lines == std::vector<std::string>{"550 100% spam"});
    CHECK(replycode("550 50%d off%").lines == std::vector<std::string>{"550 50d off"});
    // The enhanced code, when there is one, is of the reply's class; text that only looks like one is text.
    CHECK(replycode("550 2.0.0 oops").name == "error: SMFIR_REPLYCODE: enhanced status code of another class than the reply code");
    CHECK(replycode("450 5.7.1 oops").name == "error: SMFIR_REPLYCODE: enhanced status code of another class than the reply code");
    CHECK(replycode("550-5.7.1 a\r\n550 4.7.1 b").name == "error: SMFIR_REPLYCODE: enhanced status code of another class than the reply code");
    CHECK(replycode("550 4.7 is not a code").smtp_code == 550);
    CHECK(replycode("550 4.7.1234 is not a code").smtp_code == 550);

    std::vector<std::string> lines;
    std::string text;
    for (std::size_t i = 0; i < kMaxReplyLines; i++) {
        lines.push_back((i + 1 < kMaxReplyLines ? "550-" : "550 ") + std::to_string(i));
        text += (i ? "\r\n" : "") + lines.back();
    }
    CHECK(replycode(text).lines == lines);
    CHECK(replycode("550-x\r\n" + text).name == "error: SMFIR_REPLYCODE: more than 32 reply lines");
    std::string longest = "550 " + std::string(kMaxReplyLine - 4, 'a');
    CHECK(replycode(longest).lines == std::vector<std::string>{longest});
    CHECK(replycode(longest + "a").name == "error: SMFIR_REPLYCODE: reply line too long");
}

TEST_CASE("milter: REPLYCODE refuses what would break or forge the SMTP reply") {
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"250 2.0.0 Ok", "reply line without a 4xx or 5xx code"},
        {"354 go ahead", "reply line without a 4xx or 5xx code"},
        {"55 short", "reply line without a 4xx or 5xx code"},
        {"5x0 bad", "reply line without a 4xx or 5xx code"},
        {"", "reply line without a 4xx or 5xx code"},
        {"550-ok\r\n250 2.0.0 smuggled", "reply line without a 4xx or 5xx code"},
        {"550-first\r\n450 second", "reply lines with different codes"},
        {"550-a\r\nRCPT TO:<x@example.org>", "reply line without a 4xx or 5xx code"},
        {"550 trailing line break\r\n", "bad separator after the reply code"},
        {"550-trailing line break\r\n", "reply line without a 4xx or 5xx code"},
        {"550 a\nb", "CR or LF inside a reply line"},
        {"550 a\rb", "CR or LF inside a reply line"},
        {"550 a\n550 b", "CR or LF inside a reply line"},
        {"550 a%\r\n550 b", "bad separator after the reply code"},
        {"550 first\r\n550 second", "bad separator after the reply code"},
        {"550-last line continues", "bad separator after the reply code"},
        {"550xtext", "bad separator after the reply code"},
        {"550 bell\a", "control or 8-bit byte in a reply line"},
        {"550 del\x7f", "control or 8-bit byte in a reply line"},
        {"550 8bit \xc3\xa9", "control or 8-bit byte in a reply line"},
    };
    for (const auto& b : bad) {  // not a structured binding: clang 14 cannot capture one in INFO
        INFO(b.first);
        CHECK(replycode(b.first).name == "error: SMFIR_REPLYCODE: " + b.second);
    }
    Reply r;
    std::string err;
    CHECK(!parse_reply(SMFIR_REPLYCODE, "550 no NUL"sv, r, err));
    CHECK(err == "SMFIR_REPLYCODE: reply text without NUL");
    CHECK(!parse_reply(SMFIR_REPLYCODE, "550 a\0b\0"sv, r, err));
    CHECK(err == "SMFIR_REPLYCODE: NUL inside the reply text");
    CHECK(!parse_reply(SMFIR_REPLYCODE, ""sv, r, err));
}

TEST_CASE("milter: addresses, arguments, reasons and macro lists") {
    auto err_of = [](char code, std::string_view data) {
        Reply r;
        std::string err;
        return parse_reply(code, data, r, err) ? std::string() : err;
    };
    CHECK(err_of('+', "<a@example.org>\0"sv) == "");
    CHECK(err_of('+', "\0"sv) == "SMFIR_ADDRCPT: bad address");
    CHECK(err_of('+', "<a@example.org>"sv) == "SMFIR_ADDRCPT: address without NUL");
    CHECK(err_of('+', "<a@example.org>\0<b@example.org>\0"sv) == "SMFIR_ADDRCPT: data after the address");
    CHECK(err_of('-', "<a@example.org>\r\nRCPT TO:<b>\0"sv) == "SMFIR_DELRCPT: bad address");
    CHECK(err_of('-', "<a@example.org\t>\0"sv) == "SMFIR_DELRCPT: bad address");
    CHECK(err_of('+', "<\"quoted local\"@example.org>\0"sv) == "");
    CHECK(err_of('+', "<\xc3\xa9@example.org>\0"sv) == "");
    CHECK(err_of('+', "<" + std::string(kMaxAddress - 2, 'a') + ">\0"s) == "");
    CHECK(err_of('+', "<" + std::string(kMaxAddress - 1, 'a') + ">\0"s) == "SMFIR_ADDRCPT: bad address");
    CHECK(err_of('e', "<a@example.org>\0SIZE=1\0"sv) == "");
    CHECK(err_of('e', "<a@example.org>\0SIZE=1"sv) == "SMFIR_CHGFROM: ESMTP arguments without NUL");
    CHECK(err_of('e', "<a@example.org>\0SIZE=1\0X\0"sv) == "SMFIR_CHGFROM: data after the address");
    CHECK(err_of('e', "<a@example.org>\0SIZE=1\r\nRCPT TO:<b>\0"sv) == "SMFIR_CHGFROM: bad ESMTP arguments");
    CHECK(err_of('2', "<a@example.org>\0"s + std::string(kMaxEsmtpArgs + 1, 'A') + '\0') ==
          "SMFIR_ADDRCPT_PAR: bad ESMTP arguments");
    CHECK(err_of('2', "\0NOTIFY=NEVER\0"sv) == "SMFIR_ADDRCPT_PAR: bad address");

    CHECK(err_of('q', "why\0"sv) == "");
    CHECK(err_of('q', "\0"sv) == "SMFIR_QUARANTINE: bad reason");
    CHECK(err_of('q', "why"sv) == "SMFIR_QUARANTINE: reason without NUL");
    CHECK(err_of('q', "why\nnot\0"sv) == "SMFIR_QUARANTINE: bad reason");
    CHECK(err_of('q', std::string(kMaxReason + 1, 'a') + '\0') == "SMFIR_QUARANTINE: bad reason");

    CHECK(err_of('i', "\x00\x00\x00"sv) == "SMFIR_INSHEADER: truncated header index");
    CHECK(err_of('m', "\x00\x00\x00\x01" "Subject\0x"sv) == "SMFIR_CHGHEADER: header without NUL");
    CHECK(err_of('h', "Subject\0x\0y"sv) == "SMFIR_ADDHEADER: data after the header value");
    CHECK(err_of('h', "Subject\0"sv) == "SMFIR_ADDHEADER: header without NUL");

    const std::string opt = "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff"s;
    CHECK(err_of('O', opt) == "");
    CHECK(err_of('O', opt.substr(0, 11)) == "SMFIC_OPTNEG: too short");
    CHECK(err_of('O', opt + "\x00\x00\x00"s) == "SMFIC_OPTNEG: truncated macro list");
    CHECK(err_of('O', opt + "\x00\x00\x00\x07j\0"s) == "SMFIC_OPTNEG: unknown macro stage 7");
    CHECK(err_of('O', opt + "\xff\xff\xff\xffj\0"s) == "SMFIC_OPTNEG: unknown macro stage 4294967295");
    CHECK(err_of('O', opt + "\x00\x00\x00\x01j\0\x00\x00\x00\x01k\0"s) == "SMFIC_OPTNEG: macro stage 1 twice");
    CHECK(err_of('O', opt + "\x00\x00\x00\x01j"s) == "SMFIC_OPTNEG: macro list without NUL");
    CHECK(err_of('O', opt + "\x00\x00\x00\x01j\n{x}\0"s) == "SMFIC_OPTNEG: bad macro name");
    CHECK(err_of('O', opt + "\x00\x00\x00\x01"s + std::string(kMaxMacroName + 1, 'm') + '\0') ==
          "SMFIC_OPTNEG: bad macro name");
    std::string many;
    for (std::size_t i = 0; i <= kMaxMacrosPerStage; i++) many += "m ";
    CHECK(err_of('O', opt + "\x00\x00\x00\x01"s + many + '\0') == "SMFIC_OPTNEG: too many macros for one stage");
    CHECK(err_of('l', ""sv) == "SMFIR_SETSYMLIST: no macro list");
    Reply r;
    std::string err;
    REQUIRE(parse_reply('O', opt + "\x00\x00\x00\x02 , {mail_addr}\t{auth_type} ,\0"s, r, err));
    CHECK(r.symlists == std::vector<SymList>{{SMFIM_ENVFROM, {"{mail_addr}", "{auth_type}"}}});
}

TEST_CASE("milter: hostile packets end the stream with one error") {
    CHECK(error_of("\x00\x00\x00\x00"s) == "packet length 0");
    CHECK(error_of("\xff\xff\xff\xff" "c"s) == "packet length 4294967295 over the limit");
    CHECK(error_of(pk('x')) == "unknown reply code 0x78");
    CHECK(error_of(pk('\0')) == "unknown reply code 0x00");
    CHECK(error_of(pk(SMFIC_BODY, "x")) == "unknown reply code 0x42");  // a command is not a reply
    CHECK(error_of(pk('\xff')) == "unknown reply code 0xff");
    for (char c : {'a', 'c', 'd', 'f', 'p', 'r', 's', 't', '4'})
        CHECK(error_of(pk(c, "x")) == std::string(reply_name(c)) + ": unexpected data");
    CHECK(error_of(pk('h', "Subject\0value"sv)) == "SMFIR_ADDHEADER: header without NUL");
    CHECK(error_of(pk('+', "<a@example.org>"sv)) == "SMFIR_ADDRCPT: address without NUL");
    CHECK(error_of(pk('h', "Subject\0x\nBcc: v@example.org\0"sv)) ==
          "SMFIR_ADDHEADER: line break in header value without fold");
    CHECK(error_of(pk('y', "550-5.7.1 no\r\n450 4.7.1 yes\0"sv)) == "SMFIR_REPLYCODE: reply lines with different codes");

    // After an error nothing more is consumed or decoded, even valid replies.
    std::string stream = pk('c') + pk('x') + pk('c');
    ReplyDecoder d;
    std::string_view in = stream;
    Reply r;
    CHECK(d.next(in, r) == Status::reply);
    CHECK(d.next(in, r) == Status::error);
    CHECK(in.size() == 5);
    CHECK(d.next(in, r) == Status::error);
    CHECK(in.size() == 5);
    CHECK(d.error() == "unknown reply code 0x78");
    CHECK(!d.idle());
}

TEST_CASE("milter: packet limits refuse a reply before buffering it") {
    // A 10 MB reply: refused once its length field is in, with the rest of it left unread.
    std::string huge = "\x00\x98\x96\x81" "b"s + std::string(10'000'000, 'x');
    Decoded d = whole(huge);
    CHECK(d.error == "packet length 10000001 over the limit");
    CHECK(d.consumed == 4);
    CHECK(d.replies.empty());
    d = in_steps(huge.substr(0, 100), 1);
    CHECK(d.consumed == 4);

    // 64 KiB for every reply but REPLBODY, checked as soon as the code is known.
    std::string big_header = pk('h', "X-Big\0"s + std::string(65536 - 1 - 6 - 1, 'v') + '\0');
    REQUIRE(big_header.size() == 4 + 65536);
    CHECK(whole(big_header).error == "");
    big_header = pk('h', "X-Big\0"s + std::string(65536 - 6 - 1, 'v') + '\0');
    d = whole(big_header);
    CHECK(d.error == "SMFIR_ADDHEADER: packet length 65537 over the limit of 65536");
    CHECK(d.consumed == 5);

    // 1 MiB for REPLBODY.
    std::string body(1024 * 1024 - 1, 'b');
    d = whole(pk('b', body));
    CHECK(d.error == "");
    REQUIRE(d.replies.size() == 1);
    CHECK(d.replies[0].body == body);
    d = whole(pk('b', body + "b"));
    CHECK(d.error == "packet length 1048577 over the limit");
    CHECK(d.consumed == 4);

    // Limits are the caller's to choose.
    Limits small{16, 32};
    CHECK(error_of(pk('h', "X\0"s + std::string(12, 'v') + '\0'), small) == "");
    CHECK(error_of(pk('h', "X\0"s + std::string(13, 'v') + '\0'), small) ==
          "SMFIR_ADDHEADER: packet length 17 over the limit of 16");
    CHECK(error_of(pk('b', std::string(31, 'b')), small) == "");
    CHECK(error_of(pk('b', std::string(32, 'b')), small) == "packet length 33 over the limit");
}

// ---- negotiation

TEST_CASE("milter: option negotiation") {
    const Offer ours{kVersion, SMFIF_ALL, SMFIP_ALL};
    Reply theirs = bare(SMFIC_OPTNEG);
    theirs.version = 6;
    theirs.actions = SMFIF_ADDHDRS | SMFIF_CHGHDRS;
    theirs.protocol = SMFIP_NOCONNECT | SMFIP_NR_HDR | SMFIP_NOBODY;
    Agreement a;
    std::string err;
    REQUIRE(negotiate(ours, theirs, a, err));
    CHECK(a.version == 6);
    CHECK(a.actions == (SMFIF_ADDHDRS | SMFIF_CHGHDRS));
    CHECK(a.protocol == (SMFIP_NOCONNECT | SMFIP_NR_HDR | SMFIP_NOBODY));
    CHECK(!sends(a, SMFIC_CONNECT));
    CHECK(!sends(a, SMFIC_BODY));
    CHECK(sends(a, SMFIC_HELO));
    CHECK(sends(a, SMFIC_HEADER));
    CHECK(sends(a, SMFIC_BODYEOB));
    CHECK(sends(a, SMFIC_MACRO));
    CHECK(sends(a, SMFIC_UNKNOWN));
    CHECK(!answers(a, SMFIC_HEADER));
    CHECK(answers(a, SMFIC_HELO));
    CHECK(answers(a, SMFIC_BODYEOB));
    CHECK(answers(a, SMFIC_OPTNEG));
    for (char c : {SMFIC_MACRO, SMFIC_ABORT, SMFIC_QUIT, SMFIC_QUIT_NC}) CHECK(!answers(a, c));

    // Versions: 2 to ours. Older milters do not get the commands their version lacks.
    for (uint32_t v : {0u, 1u, 7u, 0xffffffffu}) {
        theirs.version = v;
        CHECK(!negotiate(ours, theirs, a, err));
        CHECK(err == "milter protocol version " + std::to_string(v) + ", we speak 2 to 6");
    }
    theirs.protocol = 0;
    theirs.version = 2;
    REQUIRE(negotiate(ours, theirs, a, err));
    CHECK(a.protocol == (SMFIP_NOUNKNOWN | SMFIP_NODATA));
    CHECK(!sends(a, SMFIC_UNKNOWN));
    CHECK(!sends(a, SMFIC_DATA));
    theirs.version = 3;
    REQUIRE(negotiate(ours, theirs, a, err));
    CHECK(a.protocol == SMFIP_NODATA);
    theirs.version = 4;
    REQUIRE(negotiate(ours, theirs, a, err));
    CHECK(a.protocol == 0);
    Offer v4{4, SMFIF_ALL, SMFIP_ALL};
    CHECK(negotiate(v4, theirs, a, err));
    theirs.version = 5;
    CHECK(!negotiate(v4, theirs, a, err));

    // Actions and protocol flags must be among those offered.
    theirs.version = 6;
    Offer narrow{kVersion, SMFIF_ADDHDRS, SMFIP_NOCONNECT | SMFIP_NOHELO};
    theirs.actions = SMFIF_ADDHDRS | SMFIF_CHGBODY;
    CHECK(!negotiate(narrow, theirs, a, err));
    CHECK(err == "milter asks for actions 0x3, we offer 0x1");
    theirs.actions = SMFIF_ADDHDRS;
    theirs.protocol = SMFIP_NR_BODY;
    CHECK(!negotiate(narrow, theirs, a, err));
    CHECK(err == "milter asks for protocol flags 0x80000, we offer 0x3");
    theirs.protocol = SMFIP_MDS_1M;
    CHECK(!negotiate(ours, theirs, a, err));
    theirs.protocol = SMFIP_NOHELO;
    REQUIRE(negotiate(narrow, theirs, a, err));
    CHECK(a.protocol == SMFIP_NOHELO);

    // Macro lists only when we offered SMFIF_SETSYMLIST.
    theirs.symlists = {{SMFIM_CONNECT, {"j", "{client_addr}"}}};
    CHECK(!negotiate(narrow, theirs, a, err));
    CHECK(err == "milter sent macro lists, we did not offer SMFIF_SETSYMLIST");
    REQUIRE(negotiate(ours, theirs, a, err));
    CHECK(a.symlists == theirs.symlists);

    CHECK(!negotiate(ours, bare(SMFIR_CONTINUE), a, err));
    CHECK(err == "expected SMFIC_OPTNEG, got SMFIR_CONTINUE");
}

TEST_CASE("milter: negotiation reply decoded and checked end to end") {
    Decoded d = whole(pk('O', "\x00\x00\x00\x06" "\x00\x00\x00\x31" "\x00\x10\x00\x7f"
                              "\x00\x00\x00\x00" "j {client_addr}\0"sv));
    REQUIRE(d.replies.size() == 1);
    Agreement a;
    std::string err;
    REQUIRE(negotiate({kVersion, SMFIF_ALL, SMFIP_ALL}, d.replies[0], a, err));
    CHECK(a.actions == (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE));
    CHECK(a.protocol == (SMFIP_HDR_LEADSPC | 0x7f));
    CHECK(a.symlists == std::vector<SymList>{{SMFIM_CONNECT, {"j", "{client_addr}"}}});
}

TEST_CASE("milter: the action each modification needs, and reply names") {
    CHECK(action_needed(SMFIR_ADDHEADER) == SMFIF_ADDHDRS);
    CHECK(action_needed(SMFIR_INSHEADER) == SMFIF_ADDHDRS);
    CHECK(action_needed(SMFIR_CHGHEADER) == SMFIF_CHGHDRS);
    CHECK(action_needed(SMFIR_REPLBODY) == SMFIF_CHGBODY);
    CHECK(action_needed(SMFIR_ADDRCPT) == SMFIF_ADDRCPT);
    CHECK(action_needed(SMFIR_ADDRCPT_PAR) == SMFIF_ADDRCPT_PAR);
    CHECK(action_needed(SMFIR_DELRCPT) == SMFIF_DELRCPT);
    CHECK(action_needed(SMFIR_CHGFROM) == SMFIF_CHGFROM);
    CHECK(action_needed(SMFIR_QUARANTINE) == SMFIF_QUARANTINE);
    CHECK(action_needed(SMFIR_SETSYMLIST) == SMFIF_SETSYMLIST);
    for (char c : {SMFIR_ACCEPT, SMFIR_CONTINUE, SMFIR_REJECT, SMFIR_REPLYCODE, SMFIR_SKIP, SMFIR_PROGRESS})
        CHECK(action_needed(c) == 0);
    CHECK(std::string(reply_name(SMFIR_ADDRCPT_PAR)) == "SMFIR_ADDRCPT_PAR");
    CHECK(reply_name(SMFIC_HELO) == nullptr);
    int known = 0;
    for (int c = 0; c < 256; c++) known += reply_name(static_cast<char>(c)) != nullptr;
    CHECK(known == 21);  // 20 replies and SMFIC_OPTNEG
}
