// Query-name validation and RDATA decoding for mta-resolver. Input comes from the network (through
// libunbound) or from peer processes, so every byte is checked before it is used.
#include "resolver/rdata.h"

#include <arpa/inet.h>
#include <sys/socket.h>

namespace mta::resolver {
namespace {

bool name_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : char(c); }

std::optional<std::string> decode_mx(std::string_view r) {
    if (r.size() < 3) return std::nullopt;
    unsigned pref = (unsigned(uint8_t(r[0])) << 8) | uint8_t(r[1]);
    std::size_t off = 2;
    auto name = decode_wire_name(r, off);
    if (!name || off != r.size()) return std::nullopt;
    return std::to_string(pref) + " " + *name;
}

std::optional<std::string> decode_ptr(std::string_view r) {
    std::size_t off = 0;
    auto name = decode_wire_name(r, off);
    if (!name || off != r.size() || *name == ".") return std::nullopt;
    return name;
}

std::optional<std::string> decode_txt(std::string_view r) {
    if (r.empty()) return std::nullopt;  // RFC 1035: at least one character-string
    std::string out;
    std::size_t off = 0;
    while (off < r.size()) {
        std::size_t len = uint8_t(r[off++]);
        if (len > r.size() - off) return std::nullopt;
        out.append(r.substr(off, len));
        off += len;
    }
    return out;
}

std::optional<std::string> decode_tlsa(std::string_view r) {
    if (r.size() < 4) return std::nullopt;  // usage, selector, matching type, >= 1 byte of data
    static const char hex[] = "0123456789abcdef";
    std::string out = std::to_string(uint8_t(r[0])) + " " + std::to_string(uint8_t(r[1])) + " " +
                      std::to_string(uint8_t(r[2])) + " ";
    for (std::size_t i = 3; i < r.size(); i++) {
        out.push_back(hex[uint8_t(r[i]) >> 4]);
        out.push_back(hex[uint8_t(r[i]) & 0xf]);
    }
    return out;
}

std::optional<std::string> decode_addr(int family, std::string_view r) {
    std::size_t want = family == AF_INET ? 4 : 16;
    if (r.size() != want) return std::nullopt;
    char buf[INET6_ADDRSTRLEN];
    if (!inet_ntop(family, r.data(), buf, sizeof buf)) return std::nullopt;
    return std::string(buf);
}

}  // namespace

bool supported_qtype(uint64_t q) {
    return q == kTypeA || q == kTypeAAAA || q == kTypeMX || q == kTypeTLSA || q == kTypeTXT || q == kTypePTR;
}

const char* qtype_name(uint16_t q) {
    switch (q) {
    case kTypeA: return "A";
    case kTypeAAAA: return "AAAA";
    case kTypeMX: return "MX";
    case kTypeTLSA: return "TLSA";
    case kTypeTXT: return "TXT";
    case kTypePTR: return "PTR";
    }
    return "?";
}

std::optional<std::string> normalize_name(std::string_view in) {
    if (!in.empty() && in.back() == '.') in.remove_suffix(1);
    if (in.empty() || in.size() > kMaxNameText) return std::nullopt;
    std::string out;
    out.reserve(in.size());
    std::size_t label = 0;
    for (char ch : in) {
        auto c = static_cast<unsigned char>(ch);
        if (c == '.') {
            if (label == 0) return std::nullopt;
            label = 0;
        } else {
            if (!name_char(c) || ++label > kMaxLabel) return std::nullopt;
        }
        out.push_back(lower(c));
    }
    if (label == 0) return std::nullopt;
    return out;
}

std::optional<std::string> decode_wire_name(std::string_view wire, std::size_t& off) {
    std::string out;
    std::size_t pos = off, wire_len = 0;
    for (;;) {
        if (pos >= wire.size()) return std::nullopt;
        std::size_t len = uint8_t(wire[pos++]);
        wire_len += 1 + len;
        if (wire_len > kMaxWireName) return std::nullopt;
        if (len == 0) break;
        if (len > kMaxLabel) return std::nullopt;  // also refuses compression pointers (0xC0..)
        if (len > wire.size() - pos) return std::nullopt;
        if (!out.empty()) out.push_back('.');
        for (std::size_t i = 0; i < len; i++) {
            auto c = static_cast<unsigned char>(wire[pos + i]);
            if (!name_char(c)) return std::nullopt;
            out.push_back(lower(c));
        }
        pos += len;
    }
    off = pos;
    if (out.empty()) return std::string(".");
    return out;
}

std::optional<std::string> rdata_to_text(uint16_t qtype, std::string_view rdata) {
    std::optional<std::string> out;
    switch (qtype) {
    case kTypeA: out = decode_addr(AF_INET, rdata); break;
    case kTypeAAAA: out = decode_addr(AF_INET6, rdata); break;
    case kTypeMX: out = decode_mx(rdata); break;
    case kTypePTR: out = decode_ptr(rdata); break;
    case kTypeTXT: out = decode_txt(rdata); break;
    case kTypeTLSA: out = decode_tlsa(rdata); break;
    default: return std::nullopt;
    }
    if (out && out->size() > kMaxRecordText) return std::nullopt;
    return out;
}

}  // namespace mta::resolver
