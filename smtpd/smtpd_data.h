// The message-body byte state machine for DATA (dot-stuffed, ends only at CRLF.CRLF) and BDAT
// (raw chunks). Pure: bytes in, body bytes out. Trusts nothing; this is where SMTP smuggling dies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mta::smtpd {

class BodyReader {
public:
    enum class Mode { dot, raw };  // DATA or BDAT

    BodyReader(Mode mode, uint64_t size_limit) : mode_(mode), limit_(size_limit) {}

    // Consumes bytes from `in` and appends the body (dot-unstuffed in dot mode) to `out`, while the
    // message is still acceptable. In dot mode it stops right after the terminating CRLF.CRLF and
    // returns how many bytes it consumed; in raw mode it always consumes everything.
    std::size_t feed(std::string_view in, std::string& out);

    // Raw mode, after the LAST chunk: a CR still waiting for its LF is a bare CR.
    void finish();

    bool done() const { return done_; }                      // dot mode: end marker seen
    bool bare_cr_lf() const { return bare_; }                 // a CR or LF not part of a CRLF pair
    bool nul() const { return nul_; }
    bool too_big() const { return too_big_; }
    uint64_t size() const { return size_; }                   // body bytes after unstuffing
    uint64_t received_headers() const { return received_; }   // "Received:" lines in the header section
    bool refused() const { return bare_ || nul_ || too_big_; }

private:
    enum class State { line_start, dot, dot_cr, mid, cr };

    void emit(std::string& out, const char* p, std::size_t n);
    void emit_crlf(std::string& out);
    void track_header(const char* p, std::size_t n);
    void end_line();

    Mode mode_;
    uint64_t limit_;
    State state_ = State::line_start;
    bool done_ = false, bare_ = false, nul_ = false, too_big_ = false;
    uint64_t size_ = 0, received_ = 0;
    // Header-section tracking, enough to count Received: lines.
    bool in_headers_ = true;
    std::size_t line_len_ = 0;
    char prefix_[9] = {};
};

}  // namespace mta::smtpd
