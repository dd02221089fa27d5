// The maildrop file format: encoding and strict parsing (pure, no I/O).
#include "common/wire/maildrop.h"

#include "common/protocol.h"
#include "common/wire/limits.h"

namespace mta::wire {
bool maildrop_address_ok(std::string_view a) {
    if (a.empty() || a.size() > kMaxAddress) return false;
    for (unsigned char c : a)
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>') return false;
    auto at = a.rfind('@');
    return at != std::string_view::npos && at > 0 && at + 1 < a.size() && a.find('@') == at;
}

bool maildrop_notify_ok(uint64_t n) {
    constexpr uint64_t kAny = ipc::kNotifySuccess | ipc::kNotifyFailure | ipc::kNotifyDelay;
    return n == ipc::kNotifyNever || (n != 0 && (n & ~kAny) == 0);
}

bool maildrop_envid_ok(std::string_view e) {
    if (e.empty() || e.size() > 100) return false;
    for (unsigned char c : e)
        if (c <= 0x20 || c >= 0x7f) return false;
    return true;
}

std::string encode_maildrop(const Maildrop& m) {
    std::string s(kMaildropMagic);
    s += "\nU " + std::to_string(m.uid) + "\nS " + m.sender + "\n";
    if (m.notify) s += "N " + std::to_string(m.notify) + "\n";
    if (m.ret) s += m.ret == 1 ? "T FULL\n" : "T HDRS\n";
    if (!m.envid.empty()) s += "E " + m.envid + "\n";
    for (auto& r : m.rcpts) s += "R " + r + "\n";
    s += "\n";
    s += m.body;
    return s;
}

bool parse_maildrop(std::string_view in, Maildrop& out, std::string& err) {
    out = Maildrop{};
    std::size_t pos = 0;
    auto line = [&](std::string_view& l) {
        std::size_t nl = in.find('\n', pos);
        if (nl == std::string_view::npos) return false;
        l = in.substr(pos, nl - pos);
        pos = nl + 1;
        return clean_text(l, kMaxAddress + 2);  // the queue's text rule (common/wire/limits.h)
    };
    std::string_view l;
    if (!line(l) || l != kMaildropMagic) { err = "bad magic line"; return false; }
    if (!line(l) || l.size() < 3 || l.substr(0, 2) != "U " || l.size() > 22) { err = "bad U line"; return false; }
    if (l.size() > 3 && l[2] == '0') { err = "bad uid"; return false; }  // one spelling per number
    uint64_t uid = 0;
    for (char c : l.substr(2)) {
        if (c < '0' || c > '9' || uid > (UINT64_MAX - 9) / 10) { err = "bad uid"; return false; }
        uid = uid * 10 + uint64_t(c - '0');
    }
    out.uid = uid;
    if (!line(l) || l.substr(0, 2) != "S ") { err = "bad S line"; return false; }
    out.sender = std::string(l.substr(2));
    if (!out.sender.empty() && !maildrop_address_ok(out.sender)) { err = "bad sender"; return false; }
    // Optional DSN lines, each at most once and in this order; then the recipients.
    if (!line(l)) { err = "bad recipient line"; return false; }
    if (l.substr(0, 2) == "N ") {
        uint64_t n = 0;
        std::string_view d = l.substr(2);
        if (d.empty() || d.size() > 2 || d[0] == '0') { err = "bad N line"; return false; }
        for (char c : d) {
            if (c < '0' || c > '9') { err = "bad N line"; return false; }
            n = n * 10 + uint64_t(c - '0');
        }
        if (!maildrop_notify_ok(n)) { err = "bad N line"; return false; }
        out.notify = n;
        if (!line(l)) { err = "bad recipient line"; return false; }
    }
    if (l.substr(0, 2) == "T ") {
        if (l == "T FULL") out.ret = 1;
        else if (l == "T HDRS") out.ret = 2;
        else { err = "bad T line"; return false; }
        if (!line(l)) { err = "bad recipient line"; return false; }
    }
    if (l.substr(0, 2) == "E ") {
        if (!maildrop_envid_ok(l.substr(2))) { err = "bad E line"; return false; }
        out.envid = std::string(l.substr(2));
        if (!line(l)) { err = "bad recipient line"; return false; }
    }
    for (bool first = true;; first = false) {
        if (!first && !line(l)) { err = "bad recipient line"; return false; }
        if (l.empty()) break;
        if (l.substr(0, 2) != "R " || !maildrop_address_ok(l.substr(2))) { err = "bad recipient"; return false; }
        if (out.rcpts.size() >= kMaxMaildropRecipients) { err = "too many recipients"; return false; }
        out.rcpts.emplace_back(l.substr(2));
    }
    if (out.rcpts.empty()) { err = "no recipients"; return false; }
    std::string_view body = in.substr(pos);
    for (std::size_t i = 0; i < body.size(); i++) {
        char c = body[i];
        if (c == '\0') { err = "NUL in message"; return false; }
        if (c == '\r' && (i + 1 >= body.size() || body[i + 1] != '\n')) { err = "bare CR in message"; return false; }
        if (c == '\n' && (i == 0 || body[i - 1] != '\r')) { err = "bare LF in message"; return false; }
    }
    if (!body.empty() && body.size() < 2) { err = "truncated message"; return false; }
    if (body.size() >= 2 && body.substr(body.size() - 2) != "\r\n") { err = "message does not end with CRLF"; return false; }
    out.body = std::string(body);
    return true;
}

}  // namespace mta::wire
