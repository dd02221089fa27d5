// DATA/BDAT body state machine. Only CR LF "." CR LF ends DATA; every CR or LF that is not part of
// a CRLF pair marks the message as refused (RFC 5321 §2.3.8), so no variant can smuggle a command.
#include "smtpd/smtpd_data.h"

namespace mta::smtpd {

void BodyReader::emit(std::string& out, const char* p, std::size_t n) {
    size_ += n;
    if (size_ > limit_) too_big_ = true;
    if (!refused()) headers_.text(std::string_view(p, n), out);
}

void BodyReader::emit_crlf(std::string& out) {
    size_ += 2;
    if (size_ > limit_) too_big_ = true;
    if (!refused()) headers_.line_end(out);
}

std::size_t BodyReader::feed(std::string_view in, std::string& out) {
    std::size_t i = 0;
    const std::size_t n = in.size();
    while (i < n && !done_) {
        const char c = in[i];
        switch (state_) {
        case State::line_start:
            state_ = State::mid;
            if (mode_ == Mode::dot && c == '.') {  // stuffing dot or the start of the end marker
                state_ = State::dot;
                i++;
            }
            break;
        case State::dot:
            if (c == '\r') {
                state_ = State::dot_cr;
                i++;
            } else {
                state_ = State::mid;  // the dot was stuffing: drop it, reprocess c
            }
            break;
        case State::dot_cr:
            if (c == '\n') {
                done_ = true;
                if (!refused()) headers_.end(out);
                i++;
            } else {
                bare_ = true;  // ".\rX": a bare CR
                emit(out, "\r", 1);
                state_ = State::mid;
            }
            break;
        case State::cr:
            if (c == '\n') {
                emit_crlf(out);
                state_ = State::line_start;
                i++;
            } else {
                bare_ = true;
                emit(out, "\r", 1);
                state_ = State::mid;
            }
            break;
        case State::mid:
            if (c == '\r') {
                state_ = State::cr;
                i++;
            } else if (c == '\n') {
                bare_ = true;  // never a line boundary: the state stays mid-line
                emit(out, "\n", 1);
                i++;
            } else {
                if (c == '\0') nul_ = true;
                std::size_t j = i + 1;
                while (j < n && in[j] != '\r' && in[j] != '\n' && in[j] != '\0') j++;
                emit(out, in.data() + i, j - i);
                i = j;
            }
            break;
        }
    }
    return i;
}

void BodyReader::finish(std::string& out) {
    if (state_ == State::cr) bare_ = true;
    if (!refused()) headers_.end(out);
}

}  // namespace mta::smtpd
