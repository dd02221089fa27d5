// The message-body byte state machine for DATA (dot-stuffed, ends only at CRLF.CRLF) and BDAT
// (raw chunks). Pure: bytes in, body bytes out. Trusts nothing; this is where SMTP smuggling dies.
// It also adds a missing Message-ID:/Date: at the end of the header section when asked to
// (authenticated submission only; common/mail_headers.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/mail_headers.h"

namespace mta::smtpd {

class BodyReader {
public:
    enum class Mode { dot, raw };  // DATA or BDAT

    // `add`: the headers to add when missing (empty values: none, the body passes through unchanged).
    BodyReader(Mode mode, uint64_t size_limit, MissingHeaders add = {})
        : mode_(mode), limit_(size_limit), headers_(std::move(add)) {}

    // Consumes bytes from `in` and appends the body (dot-unstuffed in dot mode) to `out`, while the
    // message is still acceptable. In dot mode it stops right after the terminating CRLF.CRLF and
    // returns how many bytes it consumed; in raw mode it always consumes everything. Added headers
    // go to `out` too but do not count in size().
    std::size_t feed(std::string_view in, std::string& out);

    // Raw mode, after the LAST chunk: a CR still waiting for its LF is a bare CR; a message that is
    // all headers gets the missing ones appended to `out`.
    void finish(std::string& out);

    bool done() const { return done_; }                      // dot mode: end marker seen
    bool bare_cr_lf() const { return bare_; }                 // a CR or LF not part of a CRLF pair
    bool nul() const { return nul_; }
    bool too_big() const { return too_big_; }
    uint64_t size() const { return size_; }                   // body bytes after unstuffing
    uint64_t received_headers() const { return headers_.received(); }  // "Received:" fields in the header section
    bool refused() const { return bare_ || nul_ || too_big_; }

private:
    enum class State { line_start, dot, dot_cr, mid, cr };

    void emit(std::string& out, const char* p, std::size_t n);
    void emit_crlf(std::string& out);

    Mode mode_;
    uint64_t limit_;
    State state_ = State::line_start;
    bool done_ = false, bare_ = false, nul_ = false, too_big_ = false;
    uint64_t size_ = 0;
    HeaderSection headers_;  // sees only what is still acceptable: a refused body is thrown away
};

}  // namespace mta::smtpd
