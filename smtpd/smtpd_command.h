// SMTP command-line framing and parsing: pure functions over untrusted byte spans, no I/O.
// Trusts nothing: every byte comes straight from the client.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mta::smtpd {

// ---- framing: cut one command line out of the input buffer ----
enum class FrameKind {
    need_more,   // no complete line yet; `consumed` bytes may still be dropped (discard mode)
    line,        // `line` is a complete command (CRLF stripped)
    bare_lf,     // a line ended in LF without CR: reply 500 and go on
    too_long,    // over the limit: reply 500 once; the rest of the line is discarded
};

struct Frame {
    FrameKind kind = FrameKind::need_more;
    std::size_t consumed = 0;   // bytes to remove from the input buffer
    std::string_view line;      // view into the input, valid for kind == line
};

// Cuts the next command from `buf`. `discarding` is the framer's state: true while the tail of an
// over-long line is being thrown away; the function updates it. `limit` is the longest command
// (without CRLF) accepted.
Frame next_command(std::string_view buf, std::size_t limit, bool& discarding);

// ---- verbs ----
// not_implemented: verbs of RFC 821/1985/2645 that we recognise and refuse with 502 (TURN, ETRN, ...).
enum class Verb { unknown, helo, ehlo, mail, rcpt, data, bdat, rset, noop, quit, vrfy, expn, help, starttls, auth,
                  not_implemented };

struct Command {
    Verb verb = Verb::unknown;
    std::string_view arg;   // for MAIL/RCPT: what follows "FROM:"/"TO:"; else after the verb's space
    std::string_view line;  // the whole line (an unknown command goes to the milters as it came)
    bool bad_chars = false; // NUL or another control byte in the line (reply 500 5.5.2)
    bool bad_syntax = false;// MAIL without FROM:, RCPT without TO:, verb glued to junk
};

Command parse_command(std::string_view line);

// ---- ESMTP parameters (RFC 5321 §4.1.2 esmtp-param) ----
struct Reply {
    int code = 0;              // 0 = no error
    const char* enhanced = "";
    std::string text;
    explicit operator bool() const { return code != 0; }
};

enum class BodyType : uint64_t { seven_bit = 0, eight_bit = 1, binary = 2 };
enum class Ret : uint64_t { unset = 0, full = 1, hdrs = 2 };

struct MailParams {
    uint64_t size = 0;          // SIZE= as declared, 0 if absent
    BodyType body = BodyType::seven_bit;
    bool smtputf8 = false;
    bool requiretls = false;    // RFC 8689; the session checks that it runs over TLS
    Ret ret = Ret::unset;
    std::string envid;          // decoded xtext
    std::string auth;           // AUTH= as decoded (RFC 4954 §5); informational only
};

struct RcptParams {
    uint64_t notify = 0;        // ipc::kNotify* bits, 0 if absent
    std::string orcpt;          // "type;decoded-address", empty if absent
};

// Parses the parameters after the MAIL path. `size_limit` is message_size_limit (552 5.3.4 past it).
Reply parse_mail_params(std::string_view params, uint64_t size_limit, MailParams& out);
Reply parse_rcpt_params(std::string_view params, RcptParams& out);

// BDAT <size> [LAST]
struct BdatArgs {
    uint64_t size = 0;
    bool last = false;
};
std::optional<BdatArgs> parse_bdat(std::string_view arg);

}  // namespace mta::smtpd
