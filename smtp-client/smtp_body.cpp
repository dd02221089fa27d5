// BodyEncoder: normalise line endings to CRLF and dot-stuff, across chunk boundaries (pure);
// BdatEncoder: the same without stuffing, framed into BDAT chunks.
#include "smtp-client/smtp_body.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace mta::smtp {

void BodyEncoder::feed(std::string_view in, std::string& out) {
    out.reserve(out.size() + in.size() + in.size() / 32 + 8);
    std::size_t i = 0;
    while (i < in.size()) {
        if (pending_cr_) {
            pending_cr_ = false;
            out += "\r\n";
            line_start_ = true;
            col_ = 0;
            if (in[i] == '\n') {
                i++;
                continue;
            }
        }
        if (stuff_ && line_start_ && in[i] == '.') {
            out.push_back('.');
            col_++;
        }
        // Copy the run of ordinary bytes up to the next CR or LF, in pieces that fit the line limit.
        std::size_t j = i;
        while (j < in.size() && in[j] != '\r' && in[j] != '\n') j++;
        while (i < j) {
            if (col_ >= kMaxLine) {
                out += "\r\n ";  // the continuation starts with a space: never a dot, never a new header
                col_ = 1;
            }
            std::size_t n = std::min(j - i, kMaxLine - col_);
            out.append(in.data() + i, n);
            col_ += n;
            i += n;
            line_start_ = false;
        }
        if (j == in.size()) break;
        col_ = 0;
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
    col_ = 0;
    if (stuff_) out += ".\r\n";
    line_start_ = true;
}

bool BdatEncoder::next_chunk(std::string& out) {
    if (last_sent_ || (!ended_ && buf_.size() <= chunk_)) return false;  // more may follow
    std::size_t n = std::min(buf_.size(), chunk_);
    bool last = ended_ && n == buf_.size();
    out += "BDAT " + std::to_string(n) + (last ? " LAST\r\n" : "\r\n");
    out.append(buf_, 0, n);
    buf_.erase(0, n);
    last_sent_ = last;
    return true;
}

bool body_has_8bit(int fd) {
    char buf[64 * 1024];
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        for (ssize_t i = 0; i < n; i++)
            if (static_cast<unsigned char>(buf[i]) >= 0x80) return true;
        off += n;
    }
}

}  // namespace mta::smtp
