#include "common/base64.h"

#include <cstdint>

namespace mta {
namespace {

int value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

bool folding_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

std::optional<std::string> base64_decode(std::string_view in, Base64Mode mode) {
    std::string out;
    out.reserve(in.size() / 4 * 3);
    uint32_t acc = 0;
    std::size_t chars = 0, pad = 0;
    for (char c : in) {
        if (mode == Base64Mode::folded && folding_space(c)) continue;
        if (c == '=') {
            if (++pad > 2) return std::nullopt;
            continue;
        }
        int v = value(c);
        if (v < 0 || pad > 0) return std::nullopt;  // garbage, or data after padding
        acc = (acc << 6) | uint32_t(v);
        if (++chars % 4 == 0) {
            out.push_back(char((acc >> 16) & 0xff));
            out.push_back(char((acc >> 8) & 0xff));
            out.push_back(char(acc & 0xff));
            acc = 0;
        }
    }
    std::size_t rest = chars % 4;
    if (rest == 1 || (rest == 0 && pad != 0) || (rest != 0 && rest + pad != 4)) return std::nullopt;
    bool strict = mode == Base64Mode::strict;
    if (rest == 2) {
        if (strict && (acc & 0xf)) return std::nullopt;  // non-canonical: no encoder writes it
        out.push_back(char((acc >> 4) & 0xff));
    } else if (rest == 3) {
        if (strict && (acc & 0x3)) return std::nullopt;
        out.push_back(char((acc >> 10) & 0xff));
        out.push_back(char((acc >> 2) & 0xff));
    }
    return out;
}

std::string base64_encode(std::string_view in) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        uint32_t v = uint32_t(static_cast<unsigned char>(in[i])) << 16 |
                     uint32_t(static_cast<unsigned char>(in[i + 1])) << 8 | static_cast<unsigned char>(in[i + 2]);
        for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
    }
    if (std::size_t rest = in.size() - i; rest > 0) {
        uint32_t v = uint32_t(static_cast<unsigned char>(in[i])) << 16;
        if (rest == 2) v |= uint32_t(static_cast<unsigned char>(in[i + 1])) << 8;
        out.push_back(kAlphabet[(v >> 18) & 63]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
        out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
        out.push_back('=');
    }
    return out;
}

}  // namespace mta
