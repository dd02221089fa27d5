// Maps a local part to the Maildir directory name used under mail_dir. Shared by smtpd (refuse at RCPT)
// and mta-local (refuse at delivery) so both sides agree on what is deliverable.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace mta {

// Lower-cased local part, or nullopt if it cannot safely be a single directory name: empty, over 64
// octets, starts with '.', contains '/', NUL, control bytes, or anything outside printable ASCII
// (UTF-8 local parts are refused here until the local delivery agent learns to handle them).
inline std::optional<std::string> maildir_name(std::string_view local) {
    if (local.empty() || local.size() > 64 || local[0] == '.') return std::nullopt;
    std::string out;
    out.reserve(local.size());
    for (unsigned char c : local) {
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == '\\') return std::nullopt;
        out.push_back(char(c >= 'A' && c <= 'Z' ? c + 32 : c));
    }
    return out;
}

}  // namespace mta
