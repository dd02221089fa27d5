// SASL PLAIN/LOGIN decoding for SMTP AUTH. Every byte here comes from an unauthenticated client.
#include "smtpd/smtpd_auth.h"

#include <cstdint>

namespace mta::smtpd {
namespace {

constexpr std::size_t kMaxField = 255;

int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

bool clean(std::string_view s) {
    return !s.empty() && s.size() <= kMaxField && s.find_first_of(std::string_view("\0\r\n", 3)) == std::string_view::npos;
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view s) {
    if (s.size() % 4 != 0) return std::nullopt;
    std::string out;
    out.reserve(s.size() / 4 * 3);
    for (std::size_t i = 0; i < s.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = s[i + j];
            if (c == '=') {
                // Padding only at the very end, only in the last two positions.
                if (i + 4 != s.size() || j < 2) return std::nullopt;
                v[j] = 0;
                pad++;
            } else {
                if (pad) return std::nullopt;  // data after '='
                v[j] = b64_value(c);
                if (v[j] < 0) return std::nullopt;
            }
        }
        uint32_t n = uint32_t(v[0]) << 18 | uint32_t(v[1]) << 12 | uint32_t(v[2]) << 6 | uint32_t(v[3]);
        if ((pad == 2 && (n & 0xffff)) || (pad == 1 && (n & 0xff))) return std::nullopt;  // non-canonical
        out += char(n >> 16);
        if (pad < 2) out += char((n >> 8) & 0xff);
        if (pad < 1) out += char(n & 0xff);
    }
    return out;
}

std::string base64_encode(std::string_view s) {
    static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < s.size(); i += 3) {
        uint32_t n = uint32_t(static_cast<unsigned char>(s[i])) << 16;
        if (i + 1 < s.size()) n |= uint32_t(static_cast<unsigned char>(s[i + 1])) << 8;
        if (i + 2 < s.size()) n |= uint32_t(static_cast<unsigned char>(s[i + 2]));
        out += kAlphabet[n >> 18];
        out += kAlphabet[(n >> 12) & 63];
        out += i + 1 < s.size() ? kAlphabet[(n >> 6) & 63] : '=';
        out += i + 2 < s.size() ? kAlphabet[n & 63] : '=';
    }
    return out;
}

std::optional<Credentials> parse_plain(std::string_view d) {
    std::size_t a = d.find('\0');
    if (a == std::string_view::npos) return std::nullopt;
    std::size_t b = d.find('\0', a + 1);
    if (b == std::string_view::npos) return std::nullopt;
    std::string_view authzid = d.substr(0, a), authcid = d.substr(a + 1, b - a - 1), passwd = d.substr(b + 1);
    if (!clean(authcid) || !clean(passwd)) return std::nullopt;  // also refuses a third NUL
    if (!authzid.empty() && authzid != authcid) return std::nullopt;
    return Credentials{std::string(authcid), std::string(passwd)};
}

bool valid_login_value(std::string_view decoded) { return clean(decoded); }

}  // namespace mta::smtpd
