// Wire encoding of a stored message body for DATA: CRLF line endings only and dot-stuffing.
// Pure and incremental: the body arrives in arbitrary chunks; state carries across chunk boundaries.
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

}  // namespace mta::smtp
