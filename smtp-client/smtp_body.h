// Wire encoding of a stored message body for DATA: CRLF line endings only and dot-stuffing.
// Pure and incremental: the body arrives in arbitrary chunks; state carries across chunk boundaries.
// Also the 8-bit test RFC 6152 needs before sending to a server without 8BITMIME.
#pragma once
#include <string>
#include <string_view>

namespace mta::smtp {

class BodyEncoder {
public:
    // Append the encoded form of `in` to `out`. A bare LF or a bare CR becomes CRLF; a line that
    // starts with '.' gets another '.'.
    void feed(std::string_view in, std::string& out);
    // Append the terminator: CRLF first if the body did not end with a line break, then ".\r\n".
    void finish(std::string& out);

private:
    bool line_start_ = true;
    bool pending_cr_ = false;  // last chunk ended in CR: CRLF or bare CR, decided by the next byte
};

// True if the stored body (read with pread from offset 0) holds an octet above 127. A read error
// counts as "no": the transaction itself then fails on the same error and defers (4.3.0).
bool body_has_8bit(int fd);

}  // namespace mta::smtp
