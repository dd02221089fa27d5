// SMTP reply parser, EHLO keyword parser and reply-text sanitizer (pure, no I/O).
// Input comes straight from remote servers: every length and character is checked.
#include "smtp-client/smtp_reply.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace mta::smtp {
namespace {

bool digit(char c) { return c >= '0' && c <= '9'; }

ParseResult error(std::string why) {
    ParseResult r;
    r.status = ParseStatus::error;
    r.error = std::move(why);
    return r;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = char(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

}  // namespace

ParseResult parse_reply(std::string_view buf, Reply& out) {
    out.code = 0;
    out.lines.clear();
    std::size_t pos = 0;
    for (;;) {
        if (pos > kMaxReplyBytes) return error("reply too long");
        std::string_view rest = buf.substr(pos);
        std::size_t nl = rest.substr(0, kMaxReplyLine + 2).find('\n');
        if (nl == std::string_view::npos) {
            if (rest.size() > kMaxReplyLine + 1) return error("reply line too long");
            if (buf.size() >= kMaxReplyBytes) return error("reply too long");
            return {};
        }
        std::string_view line = rest.substr(0, nl);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.size() > kMaxReplyLine) return error("reply line too long");
        if (line.size() < 3 || !digit(line[0]) || !digit(line[1]) || !digit(line[2]) || line[0] < '2' ||
            line[0] > '5')
            return error("malformed reply code");
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (out.code != 0 && code != out.code) return error("inconsistent code in multiline reply");
        out.code = code;
        bool last = true;
        if (line.size() > 3) {
            if (line[3] == '-') last = false;
            else if (line[3] != ' ') return error("malformed reply separator");
        }
        if (out.lines.size() >= kMaxReplyLines) return error("too many reply lines");
        out.lines.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view());
        pos += nl + 1;
        if (last) {
            ParseResult r;
            r.status = ParseStatus::complete;
            r.consumed = pos;
            return r;
        }
    }
}

std::string sanitize(std::string_view s, std::size_t max) {
    std::string out;
    out.reserve(std::min(s.size(), max));
    bool space = false;
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f || c == ' ') {
            space = !out.empty();
            continue;
        }
        if (space) {
            if (out.size() + 1 >= max) break;
            out.push_back(' ');
            space = false;
        }
        if (out.size() >= max) break;
        out.push_back(c >= 0x80 ? '?' : char(c));
    }
    return out;
}

std::string Reply::summary() const {
    std::string s = std::to_string(code);
    if (!lines.empty() && !lines.front().empty()) s += " " + lines.front();
    return sanitize(s);
}

std::string Reply::full() const {
    std::string s = std::to_string(code);
    for (auto& l : lines) {
        if (s.size() > kMaxResultText) break;
        s += " " + l;
    }
    return sanitize(s);
}

ipc::DeliveryStatus status_for_code(int code) {
    if (code >= 200 && code < 300) return ipc::DeliveryStatus::delivered;
    if (code >= 500 && code < 600) return ipc::DeliveryStatus::bounced;
    return ipc::DeliveryStatus::deferred;
}

Extensions parse_ehlo(const Reply& r) {
    Extensions e;
    for (std::size_t i = 1; i < r.lines.size(); i++) {
        std::string_view l = r.lines[i];
        std::size_t sp = l.find(' ');
        std::string kw = upper(l.substr(0, sp));
        std::string_view arg = sp == std::string_view::npos ? std::string_view() : l.substr(sp + 1);
        if (kw == "PIPELINING") e.pipelining = true;
        else if (kw == "8BITMIME") e.eightbitmime = true;
        else if (kw == "SMTPUTF8") e.smtputf8 = true;
        else if (kw == "DSN") e.dsn = true;
        else if (kw == "STARTTLS") e.starttls = true;
        else if (kw == "ENHANCEDSTATUSCODES") e.enhanced = true;
        else if (kw == "REQUIRETLS") e.requiretls = true;
        else if (kw == "CHUNKING") e.chunking = true;
        else if (kw == "SIZE") {
            e.size = true;
            uint64_t v = 0;
            auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), v);
            e.size_limit = (ec == std::errc() && p == arg.data() + arg.size()) ? v : 0;
        }
    }
    return e;
}

}  // namespace mta::smtp
