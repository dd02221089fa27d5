// Queue ids as humans see them: the 64-bit message id as 16 upper-case hex digits (also the body file
// name). smtpd formats the same way for its "250 queued as" reply.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mta::queue {

// The one file in the body directory that is no body: an empty file whose O_PATH descriptor mta-smtpd
// gets for fstatvfs (spool_probe), so that it can check free space from inside its empty chroot.
inline constexpr std::string_view kSpaceProbe = "space-probe";

inline std::string format_qid(uint64_t msgid) {
    static const char hex[] = "0123456789ABCDEF";
    std::string s(16, '0');
    for (int i = 15; i >= 0; i--, msgid >>= 4) s[std::size_t(i)] = hex[msgid & 0xf];
    return s;
}

// Strict inverse of format_qid: exactly 16 upper-case hex digits.
inline std::optional<uint64_t> parse_qid(std::string_view s) {
    if (s.size() != 16) return std::nullopt;
    uint64_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return std::nullopt;
        v = (v << 4) | uint64_t(d);
    }
    return v;
}

}  // namespace mta::queue
