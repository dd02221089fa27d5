// SMTP reply parsing for the outbound client: pure functions over the bytes a remote server sent.
// Trusts nothing: codes, line lengths and line counts are all checked; text is sanitized before use.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/protocol.h"

namespace mta::smtp {

inline constexpr std::size_t kMaxReplyLine = 4096;    // longest reply line we accept (RFC 5321 says 512)
inline constexpr std::size_t kMaxReplyLines = 256;    // lines in one multiline reply (EHLO needs ~20)
inline constexpr std::size_t kMaxReplyBytes = 64 * 1024;  // one whole (multiline) reply
inline constexpr std::size_t kMaxResultText = 400;    // text kept per recipient result

struct Reply {
    int code = 0;                    // 200..599
    std::vector<std::string> lines;  // text after "NNN-" / "NNN " (may be empty), one per line

    // "250 first line text" (first line only), sanitized.
    std::string summary() const;
    // All lines joined with spaces after the code, sanitized and trimmed to kMaxResultText.
    std::string full() const;
    int klass() const { return code / 100; }
};

enum class ParseStatus { incomplete, complete, error };

struct ParseResult {
    ParseStatus status = ParseStatus::incomplete;
    std::size_t consumed = 0;  // bytes making up the complete reply (when complete)
    std::string error;         // why (when error)
};

// Parse one (possibly multiline) reply from the start of `buf`. Lines end in CRLF or bare LF.
// A reply longer than kMaxReplyBytes, a line over kMaxReplyLine or a bad code is an error.
ParseResult parse_reply(std::string_view buf, Reply& out);

// Replace control characters and non-ASCII bytes by spaces/'?', collapse runs, trim, cap length.
std::string sanitize(std::string_view s, std::size_t max = kMaxResultText);

// What an SMTP reply code means for a recipient: 2xx delivered, 5xx bounced, anything else deferred.
ipc::DeliveryStatus status_for_code(int code);

struct Extensions {
    bool pipelining = false;
    bool eightbitmime = false;
    bool smtputf8 = false;
    bool dsn = false;
    bool starttls = false;
    bool size = false;
    uint64_t size_limit = 0;  // 0 = not announced / unlimited
    bool enhanced = false;    // ENHANCEDSTATUSCODES
    bool requiretls = false;
    bool chunking = false;    // RFC 3030 BDAT
};

// Keywords from an EHLO reply (every line but the first). Unknown keywords are ignored.
Extensions parse_ehlo(const Reply& r);

}  // namespace mta::smtp
