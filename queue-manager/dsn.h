// Delivery status notifications (RFC 3464 multipart/report) as pure functions: whether NOTIFY asks for
// one, which status code a delivery error carries, and the complete DSN message text (CRLF lines).
// Inputs are queue records and the original message's bytes; all remote text is sanitised to printable
// ASCII and folded, so nothing a remote server says can break the report's structure.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "queue-manager/records.h"

namespace mta::queue {

enum class DsnKind { failure, delay, success };

// Largest original returned in a failure DSN (RET=FULL or no RET, Postfix's bounce_size_limit): a
// bigger message comes back as its headers only, so the returned MIME structure is never cut.
inline constexpr uint64_t kMaxReturnedBody = 50000;
// Largest header block returned (RET=HDRS, too big, delay and success reports).
inline constexpr std::size_t kMaxReturnedHeaders = 256 * 1024;

// NOTIFY (RFC 3461): not given = FAILURE and DELAY; NEVER = none; SUCCESS only when asked.
bool notify_allows(uint64_t notify, DsnKind kind);

// RET handling (RFC 3461 §4.3): FULL and no RET (as Postfix) return the whole message up to
// kMaxReturnedBody, HDRS only its header block; delay and success reports always carry the headers only.
bool return_full(const MessageRecord& m, DsnKind kind);

// A delivery error as the DSN shows it: "mx[1.2.3.4] said: 550 5.1.1 x (in reply to RCPT TO command)"
// gives mta "mx", diagnostic "550 5.1.1 x", smtp true; our own texts ("4.4.1 connect ...") smtp false.
struct RemoteReply {
    std::string mta, diagnostic;
    bool smtp = false;
};
RemoteReply split_remote(std::string_view text);

// "5.1.1" from "550 5.1.1 no such user" or "5.1.1 no such user"; a class default otherwise.
std::string status_code(std::string_view text, DsnKind kind);

// The header block of a stored message (through the empty line, at most kMaxReturnedHeaders bytes).
std::string header_block(std::string_view message);

// Printable ASCII only (others become '?'), at most max bytes.
std::string dsn_sanitise(std::string_view s, std::size_t max = 1000);

struct DsnInput {
    DsnKind kind = DsnKind::failure;
    std::string hostname;                   // Reporting-MTA and From: MAILER-DAEMON@hostname
    uint64_t orig_msgid = 0, dsn_msgid = 0;
    MessageRecord orig;
    std::vector<RecipientRecord> rcpts;     // the recipients being reported, with last_error
    uint64_t now = 0;
    uint64_t retry_until = 0;               // delay reports: when the queue gives up
    std::string original;                   // header block, or the full message when `full`
    bool full = false;
};

// The complete DSN message, addressed to orig.sender, with CRLF line ends.
std::string build_dsn(const DsnInput& in);

}  // namespace mta::queue
