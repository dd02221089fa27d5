// BodyEncoder: normalise line endings to CRLF and dot-stuff, across chunk boundaries (pure).
#include "smtp-client/smtp_body.h"

#include <cstring>

namespace mta::smtp {

void BodyEncoder::feed(std::string_view in, std::string& out) {
    out.reserve(out.size() + in.size() + in.size() / 32 + 8);
    std::size_t i = 0;
    while (i < in.size()) {
        if (pending_cr_) {
            pending_cr_ = false;
            out += "\r\n";
            line_start_ = true;
            if (in[i] == '\n') {
                i++;
                continue;
            }
        }
        if (line_start_ && in[i] == '.') out.push_back('.');
        // Copy the run of ordinary bytes up to the next CR or LF in one go.
        std::size_t j = i;
        while (j < in.size() && in[j] != '\r' && in[j] != '\n') j++;
        if (j > i) {
            out.append(in.data() + i, j - i);
            line_start_ = false;
        }
        if (j == in.size()) break;
        if (in[j] == '\n') {
            out += "\r\n";
            line_start_ = true;
        } else {
            pending_cr_ = true;
        }
        i = j + 1;
    }
}

void BodyEncoder::finish(std::string& out) {
    if (pending_cr_) {
        pending_cr_ = false;
        out += "\r\n";
        line_start_ = true;
    }
    if (!line_start_) out += "\r\n";
    out += ".\r\n";
    line_start_ = true;
}

}  // namespace mta::smtp
