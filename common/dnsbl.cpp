// DNSBL zone lists, query names and answer patterns (see dnsbl.h).
#include "common/dnsbl.h"

#include <arpa/inet.h>

#include <charconv>

#include "common/address.h"

namespace mta {
namespace {

constexpr std::size_t kMaxZones = 64;

bool number(std::string_view s, int lo, int hi, int& out) {
    if (s.empty() || s.size() > 11) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size() && out >= lo && out <= hi;
}

void set_bit(std::array<uint64_t, 4>& b, int v) { b[std::size_t(v) / 64] |= uint64_t(1) << (v % 64); }
bool has_bit(const std::array<uint64_t, 4>& b, int v) { return (b[std::size_t(v) / 64] >> (v % 64)) & 1; }

// "N", "[N..M]", "[A;B..C;...]" -> the set of octet values.
bool parse_octet(std::string_view s, std::array<uint64_t, 4>& out) {
    out = {};
    int v = 0;
    if (s.empty()) return false;
    if (s.front() != '[') {
        if (!number(s, 0, 255, v)) return false;
        set_bit(out, v);
        return true;
    }
    if (s.size() < 3 || s.back() != ']') return false;
    s = s.substr(1, s.size() - 2);
    while (true) {
        std::size_t semi = s.find(';');
        std::string_view item = s.substr(0, semi);
        std::size_t dots = item.find("..");
        int lo = 0, hi = 0;
        if (dots == std::string_view::npos) {
            if (!number(item, 0, 255, lo)) return false;
            hi = lo;
        } else if (!number(item.substr(0, dots), 0, 255, lo) || !number(item.substr(dots + 2), 0, 255, hi) || lo > hi) {
            return false;
        }
        for (int i = lo; i <= hi; i++) set_bit(out, i);
        if (semi == std::string_view::npos) return true;
        s.remove_prefix(semi + 1);
    }
}

bool parse_entry(std::string_view e, DnsblZone& z, std::string& err) {
    z = DnsblZone{};
    z.text = std::string(e);
    std::string_view rest = e;
    if (std::size_t star = rest.rfind('*'); star != std::string_view::npos) {
        if (!number(rest.substr(star + 1), -1000, 1000, z.weight)) {
            err = "bad weight in \"" + z.text + "\" (a whole number from -1000 to 1000)";
            return false;
        }
        rest = rest.substr(0, star);
    }
    std::string_view pattern;
    if (std::size_t eq = rest.find('='); eq != std::string_view::npos) {
        pattern = rest.substr(eq + 1);
        rest = rest.substr(0, eq);
    }
    if (!rest.empty() && rest.back() == '.') rest.remove_suffix(1);
    z.zone = addr::lower(rest);
    if (z.zone.empty() || z.zone.size() > 180 || !addr::valid_domain(z.zone)) {
        err = "bad zone name in \"" + z.text + "\"";
        return false;
    }
    if (pattern.empty() && e.find('=') != std::string_view::npos) {
        err = "empty reply pattern in \"" + z.text + "\"";
        return false;
    }
    if (!pattern.empty()) {
        std::size_t start = 0;
        for (int i = 0; i < 4; i++) {
            // Dots inside [..] belong to ranges: split at dots outside brackets only.
            std::size_t end = start;
            int depth = 0;
            while (end < pattern.size() && (depth > 0 || pattern[end] != '.')) {
                if (pattern[end] == '[') depth++;
                else if (pattern[end] == ']') depth--;
                end++;
            }
            std::array<uint64_t, 4> bits;
            if ((i < 3) != (end < pattern.size()) || !parse_octet(pattern.substr(start, end - start), bits)) {
                err = "bad reply pattern in \"" + z.text + "\" (expected four octets such as 127.0.0.[2..11])";
                return false;
            }
            z.octets.push_back(bits);
            start = end + 1;
        }
    }
    return true;
}

}  // namespace

bool parse_dnsbl_zones(std::string_view text, std::vector<DnsblZone>& out, std::string& err) {
    out.clear();
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == ',')) i++;
        std::size_t j = i;
        while (j < text.size() && text[j] != ' ' && text[j] != '\t' && text[j] != ',') j++;
        if (j == i) break;
        DnsblZone z;
        if (!parse_entry(text.substr(i, j - i), z, err)) return false;
        if (out.size() >= kMaxZones) {
            err = "more than " + std::to_string(kMaxZones) + " zones";
            return false;
        }
        out.push_back(std::move(z));
        i = j;
    }
    return true;
}

std::string dnsbl_query_name(std::string_view ip, std::string_view zone) {
    std::string s(ip);
    unsigned char a[16];
    static const char hex[] = "0123456789abcdef";
    std::string out;
    if (inet_pton(AF_INET, s.c_str(), a) == 1) {
        for (int k = 3; k >= 0; k--) out += std::to_string(a[k]) + ".";
    } else if (inet_pton(AF_INET6, s.c_str(), a) == 1) {
        for (int k = 15; k >= 0; k--) {
            out += hex[a[k] & 15];
            out += '.';
            out += hex[a[k] >> 4];
            out += '.';
        }
    } else {
        return "";
    }
    return out.append(zone);
}

bool dnsbl_match(const DnsblZone& z, std::string_view addr) {
    unsigned char a[4];
    if (inet_pton(AF_INET, std::string(addr).c_str(), a) != 1) return false;
    if (z.octets.empty()) return a[0] == 127;
    for (int i = 0; i < 4; i++)
        if (!has_bit(z.octets[std::size_t(i)], a[i])) return false;
    return true;
}

}  // namespace mta
