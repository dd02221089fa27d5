// The shared text rules and the queue id format (see limits.h).
#include "common/wire/limits.h"

namespace mta::wire {
namespace {

bool control(unsigned char c) { return c < 0x20 || c == 0x7f; }

}  // namespace

bool clean_text(std::string_view s, std::size_t max) {
    if (s.size() > max) return false;
    for (unsigned char c : s)
        if (control(c)) return false;
    return true;
}

std::string make_clean(std::string_view s, std::size_t max) {
    std::string out(s.substr(0, max));
    for (char& ch : out)
        if (control(static_cast<unsigned char>(ch))) ch = ' ';
    return out;
}

std::string format_qid(uint64_t msgid) {
    static const char hex[] = "0123456789ABCDEF";
    std::string s(16, '0');
    for (int i = 15; i >= 0; i--, msgid >>= 4) s[std::size_t(i)] = hex[msgid & 0xf];
    return s;
}

std::optional<uint64_t> parse_qid(std::string_view s) {
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

}  // namespace mta::wire
