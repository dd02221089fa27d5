// Message header facts shared by mta-smtpd and mta-queue: the RFC 5322 date, our Message-ID, and the
// header-section scanner that adds a missing Message-ID:/Date: to locally submitted mail (authenticated
// submission, sendmail), as Postfix's cleanup does. Pure: bytes in, bytes out, no I/O, no clock.
#pragma once
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace mta {

// RFC 5322 date-time, e.g. "Sat, 28 Nov 2026 12:00:00 +0100"; `gmtoff` is seconds east of UTC.
std::string rfc5322_date(std::time_t t, long gmtoff = 0);

// "<20261128120000.0000000000000ABC@mx.example>": the UTC time and the queue id (never reused)
// make it unique, our host name makes it global.
std::string make_message_id(std::time_t t, std::string_view qid, std::string_view hostname);

// What to add when the message lacks it: the header values (Message-ID with its brackets). An empty
// value is never added; both empty (mail relayed from outside) leaves every byte as it is.
struct MissingHeaders {
    std::string message_id, date;
};

// Follows a message's header section as its bytes go by (already dot-unstuffed, CRLF lines, no bare
// CR/LF or NUL: the caller stops feeding a refused message) and inserts the missing headers where the
// section ends: before the empty line; before the first line that is not a header field (then with an
// empty line after them, so that line stays body); or at the end of a message that is all headers.
// Field names match case-insensitively, obsolete "Name :" included; a folded field counts once; a
// "Message-ID:" in the body does not count. The output does not depend on how the input is split.
class HeaderSection {
public:
    explicit HeaderSection(MissingHeaders add = {});

    void text(std::string_view s, std::string& out);  // part of the current line (no CR, no LF)
    void line_end(std::string& out);                  // the CRLF ending the current line
    void end(std::string& out);                       // the end of the message

    bool in_headers() const { return in_headers_; }
    uint64_t received() const { return received_; }   // "Received:" fields in the header section

private:
    enum class Line { unknown, field, continuation, other };

    void classify(char c);
    void decided(std::string& out);
    void close_section(std::string& out, bool blank_after);

    MissingHeaders add_;
    bool hold_;                   // something may be inserted: hold a line back until it is classified
    bool in_headers_ = true;
    bool seen_field_ = false, has_msgid_ = false, has_date_ = false;
    uint64_t received_ = 0;
    Line line_ = Line::unknown;
    std::size_t line_len_ = 0;
    bool name_space_ = false;     // white space after the name: only more of it, then ':', may follow
    std::string name_;            // lower-cased, first kNameKept bytes
    std::string held_;            // the current line while it is unknown (at most kMaxName bytes)
};

// The same for a whole message in memory (CRLF lines): returns it with the missing headers added.
std::string with_missing_headers(std::string_view message, const MissingHeaders& add);

}  // namespace mta
