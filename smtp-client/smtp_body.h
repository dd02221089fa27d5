// Wire encoding of a stored message body for DATA: CRLF line endings only and dot-stuffing; for BDAT
// (RFC 3030): the same CRLF form without dot-stuffing or terminator, framed into "BDAT <n>" chunks.
// Pure and incremental: the body arrives in arbitrary chunks; state carries across chunk boundaries.
// Also the 8-bit test RFC 6152 needs before sending to a server without 8BITMIME.
#pragma once
#include <string>
#include <string_view>

namespace mta::smtp {

class BodyEncoder {
public:
    // dot_stuff false (BDAT): no stuffing and no "." terminator; line endings exactly as for DATA.
    explicit BodyEncoder(bool dot_stuff = true) : stuff_(dot_stuff) {}
    // Append the encoded form of `in` to `out`. A bare LF or a bare CR becomes CRLF; a line that
    // starts with '.' gets another '.'; a line longer than kMaxLine octets is broken by inserting
    // CRLF SPACE (RFC 5321 4.5.3.1.6; Postfix's smtp_line_length_limit does the same).
    void feed(std::string_view in, std::string& out);
    // Append the terminator: CRLF first if the body did not end with a line break, then ".\r\n"
    // (only the CRLF without dot-stuffing).
    void finish(std::string& out);

    static constexpr std::size_t kMaxLine = 998;  // octets per line on the wire, without the CRLF

private:
    bool stuff_ = true;
    bool line_start_ = true;
    std::size_t col_ = 0;      // octets already sent on the current line
    bool pending_cr_ = false;  // last chunk ended in CR: CRLF or bare CR, decided by the next byte
};

inline constexpr std::size_t kBdatChunk = 64 * 1024;  // encoded bytes per BDAT chunk

// Cuts the encoded body into BDAT chunks: "BDAT <n>\r\n" + n octets, the last "BDAT <n> LAST\r\n" + n
// octets (n == 0 only for an empty body). Pure; the caller feeds the stored body and takes chunks.
class BdatEncoder {
public:
    explicit BdatEncoder(std::size_t chunk = kBdatChunk) : chunk_(chunk ? chunk : 1) {}
    void feed(std::string_view in) { enc_.feed(in, buf_); }
    void finish() { enc_.finish(buf_); ended_ = true; }  // no more input
    // Append the next chunk (command line and data) to `out` and return true; false after the last
    // chunk, and while the input has not ended and no more than a chunk is buffered (so a body of
    // exactly one chunk goes as a single "BDAT <n> LAST").
    bool next_chunk(std::string& out);
    bool last_sent() const { return last_sent_; }
    std::size_t buffered() const { return buf_.size(); }

private:
    BodyEncoder enc_{false};
    std::string buf_;
    std::size_t chunk_;
    bool ended_ = false;
    bool last_sent_ = false;
};

// True if the stored body (read with pread from offset 0) holds an octet above 127. A read error
// counts as "no": the transaction itself then fails on the same error and defers (4.3.0).
bool body_has_8bit(int fd);

}  // namespace mta::smtp
