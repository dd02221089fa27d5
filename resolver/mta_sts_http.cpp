// MTA-STS HTTP response reading and the policy cache file format. The response comes from a remote
// web server and the cache file from disk that only we write but still re-check: both are parsed strictly.
#include "resolver/mta_sts_http.h"

#include <charconv>

#include "common/address.h"
#include "common/mta_sts.h"

namespace mta::resolver {
namespace {

using addr::lower;
using sts::trim_wsp;

bool parse_u64(std::string_view s, uint64_t& out) {
    if (s.empty() || s.size() > 19) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::string sts_http_request(const std::string& policy_host) {
    return "GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: " + policy_host +
           "\r\nUser-Agent: mta-resolver\r\nAccept: text/plain\r\nConnection: close\r\n\r\n";
}

std::optional<std::string> parse_sts_http_response(std::string_view raw, std::string& err) {
    auto end = raw.find("\r\n\r\n");
    if (end == std::string_view::npos || end > kMaxHttpHeaderBytes) {
        err = raw.size() > kMaxHttpHeaderBytes ? "HTTP header section too large" : "incomplete HTTP response";
        return std::nullopt;
    }
    std::string_view head = raw.substr(0, end), body = raw.substr(end + 4);
    auto line_end = head.find("\r\n");
    std::string_view status = head.substr(0, line_end);
    head.remove_prefix(line_end == std::string_view::npos ? head.size() : line_end + 2);
    // "HTTP/1.x SP 3DIGIT [SP reason]"
    if (status.size() < 12 || status.substr(0, 7) != "HTTP/1." || status[8] != ' ' ||
        (status.size() > 12 && status[12] != ' ')) {
        err = "malformed HTTP status line";
        return std::nullopt;
    }
    std::string_view code = status.substr(9, 3);
    if (code != "200") {
        uint64_t n = 0;
        if (!parse_u64(code, n)) err = "malformed HTTP status line";
        else err = "HTTP status " + std::string(code) + (code[0] == '3' ? " (redirects are not followed)" : "");
        return std::nullopt;
    }
    std::optional<uint64_t> content_length;
    bool text_plain = false, have_type = false;
    while (!head.empty()) {
        auto e = head.find("\r\n");
        std::string_view line = head.substr(0, e);
        head.remove_prefix(e == std::string_view::npos ? head.size() : e + 2);
        auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) {
            err = "malformed HTTP header line";
            return std::nullopt;
        }
        for (char c : line)
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                err = "control byte in HTTP header";
                return std::nullopt;
            }
        std::string name = lower(line.substr(0, colon));
        std::string_view value = trim_wsp(line.substr(colon + 1));
        if (name == "content-type") {
            if (have_type) { err = "duplicate Content-Type"; return std::nullopt; }
            have_type = true;
            std::string media = lower(trim_wsp(value.substr(0, value.find(';'))));
            text_plain = media == "text/plain";
        } else if (name == "content-length") {
            uint64_t n = 0;
            if (content_length || !parse_u64(value, n)) { err = "bad Content-Length"; return std::nullopt; }
            content_length = n;
        } else if (name == "transfer-encoding") {
            if (lower(value) != "identity") { err = "unsupported Transfer-Encoding"; return std::nullopt; }
        }
    }
    if (!text_plain) {
        err = have_type ? "Content-Type is not text/plain" : "no Content-Type";
        return std::nullopt;
    }
    if (content_length) {
        if (*content_length > sts::kMaxPolicyBytes) { err = "policy larger than 64 KiB"; return std::nullopt; }
        if (body.size() < *content_length) { err = "truncated body"; return std::nullopt; }
        body = body.substr(0, std::size_t(*content_length));
    }
    if (body.size() > sts::kMaxPolicyBytes) {
        err = "policy larger than 64 KiB";
        return std::nullopt;
    }
    return std::string(body);
}

std::string encode_cache_file(const CachedPolicy& c) {
    return "mta-sts-cache 1\nid " + c.id + "\nfetched " + std::to_string(c.fetched) + "\n\n" + c.body;
}

bool decode_cache_file(std::string_view text, CachedPolicy& out, std::string& err) {
    auto take_line = [&](std::string_view& line) {
        auto nl = text.find('\n');
        if (nl == std::string_view::npos) return false;
        line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        return true;
    };
    std::string_view l1, l2, l3, l4;
    if (!take_line(l1) || !take_line(l2) || !take_line(l3) || !take_line(l4) || l1 != "mta-sts-cache 1" ||
        l2.substr(0, 3) != "id " || l3.substr(0, 8) != "fetched " || !l4.empty()) {
        err = "bad cache file header";
        return false;
    }
    CachedPolicy c;
    c.id = std::string(l2.substr(3));
    // The id must be one a TXT record could carry.
    if (!sts::parse_txt("v=STSv1; id=" + c.id)) {
        err = "bad policy id in cache file";
        return false;
    }
    if (!parse_u64(l3.substr(8), c.fetched)) {
        err = "bad fetch time in cache file";
        return false;
    }
    std::string perr;
    if (!sts::parse_policy(text, c.policy, perr)) {
        err = "bad cached policy: " + perr;
        return false;
    }
    c.body = std::string(text);
    out = std::move(c);
    return true;
}

}  // namespace mta::resolver
