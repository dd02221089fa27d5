// Maps a local part to the Maildir directory name used under mail_dir. Shared by smtpd (refuse at RCPT)
// and mta-local (refuse at delivery) so both sides agree on what is deliverable.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "common/address.h"

namespace mta {

// Lower-cased (ASCII only) local part, or nullopt if it cannot safely be a single directory name:
// empty, over 64 octets, starts with '.', contains '/', '\\', space, NUL, control bytes or DEL.
// Bytes >= 0x80 are kept: an SMTPUTF8 local part arrives here already checked as well-formed UTF-8
// by the address parser (mta-local re-checks it), and Linux directory names are plain bytes.
inline std::optional<std::string> maildir_name(std::string_view local) {
    if (local.empty() || local.size() > 64 || local[0] == '.') return std::nullopt;
    std::string out;
    out.reserve(local.size());
    for (unsigned char c : local) {
        if (c <= 0x20 || c == 0x7f || c == '/' || c == '\\') return std::nullopt;
        out.push_back(char(c >= 'A' && c <= 'Z' ? c + 32 : c));
    }
    if (!addr::utf8_valid(out)) return std::nullopt;
    return out;
}

}  // namespace mta
