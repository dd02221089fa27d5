// Maildrop encoding/strict parsing and sendmail's message preparation (pure, no I/O).
#include "queue-manager/maildrop.h"

#include "common/protocol.h"
#include "queue-manager/records.h"

namespace mta::queue {
namespace {

bool lower_eq(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = char(x + 32);
        if (y >= 'A' && y <= 'Z') y = char(y + 32);
        if (x != y) return false;
    }
    return true;
}

std::string trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return std::string(s);
}

}  // namespace

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

std::string to_crlf(std::string_view in, bool dot_ends) {
    std::string out;
    out.reserve(in.size() + in.size() / 32 + 2);
    std::size_t i = 0;
    while (i < in.size()) {
        std::size_t j = in.find_first_of("\r\n", i);
        std::string_view l = in.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i);
        if (dot_ends && l == ".") break;
        out.append(l);
        out += "\r\n";
        if (j == std::string_view::npos) break;
        i = (in[j] == '\r' && j + 1 < in.size() && in[j + 1] == '\n') ? j + 2 : j + 1;
    }
    return out;
}

std::vector<std::string> header_addresses(std::string_view v) {
    std::vector<std::string> out;
    std::string cur, angle;
    bool in_quote = false, in_angle = false, have_angle = false;
    int paren = 0;
    auto finish = [&]() {
        std::string a = trim(have_angle ? angle : cur);
        if (!a.empty() && a.find('@') != std::string::npos && a.find(' ') == std::string::npos) out.push_back(a);
        else if (!a.empty() && a.find_first_of(" @") == std::string::npos && !have_angle && !a.empty()) out.push_back(a);
        cur.clear();
        angle.clear();
        have_angle = false;
    };
    for (std::size_t i = 0; i < v.size(); i++) {
        char c = v[i];
        if (paren) {
            if (c == '(') paren++;
            else if (c == ')') paren--;
            continue;
        }
        if (in_quote) {
            if (c == '\\' && i + 1 < v.size()) { cur += v[++i]; continue; }
            if (c == '"') in_quote = false;
            cur += c;
            continue;
        }
        if (in_angle) {
            if (c == '>') in_angle = false;
            else angle += c;
            continue;
        }
        switch (c) {
        case '"': in_quote = true; cur += c; break;
        case '(': paren = 1; break;
        case '<': in_angle = true; have_angle = true; angle.clear(); break;
        case ',': case ';': finish(); break;
        case ':': cur.clear(); break;  // "group-name:" starts a group
        case '\r': case '\n': cur += ' '; break;
        default: cur += c;
        }
    }
    finish();
    return out;
}

PreparedMessage prepare_message(std::string_view msg, const PrepareOptions& o) {
    PreparedMessage p;
    // Header block: lines up to the first empty line, if the first line looks like a header at all.
    std::size_t pos = 0;
    std::string headers;
    bool has_from = false;
    auto is_header_start = [](std::string_view l) {
        auto colon = l.find(':');
        if (colon == std::string_view::npos || colon == 0) return false;
        for (char c : l.substr(0, colon))
            if (c <= 0x20 || c >= 0x7f) return false;
        return true;
    };
    std::string name, field;  // the current header (with continuations)
    std::vector<std::string> plain_rcpts, resent_rcpts;
    bool resent = false;
    auto flush_field = [&]() {
        if (field.empty()) return;
        bool is_resent = name.size() > 7 && lower_eq(std::string_view(name).substr(0, 7), "resent-");
        std::string_view base = is_resent ? std::string_view(name).substr(7) : std::string_view(name);
        resent = resent || is_resent;
        bool bcc = lower_eq(base, "bcc");
        if (o.extract_rcpts && (bcc || lower_eq(base, "to") || lower_eq(base, "cc"))) {
            auto value = std::string_view(field).substr(name.size() + 1);
            for (auto& a : header_addresses(value)) (is_resent ? resent_rcpts : plain_rcpts).push_back(a);
        }
        has_from = has_from || lower_eq(name, "from");
        if (!(bcc && o.extract_rcpts)) headers += field;
        field.clear();
    };
    bool in_headers = true;
    while (pos < msg.size() && in_headers) {
        std::size_t nl = msg.find("\r\n", pos);
        if (nl == std::string_view::npos) nl = msg.size();
        std::string_view l = msg.substr(pos, nl - pos);
        std::size_t next = std::min(msg.size(), nl + 2);
        if (l.empty()) { flush_field(); pos = next; in_headers = false; break; }
        if ((l[0] == ' ' || l[0] == '\t') && !field.empty()) {
            field.append(l);
            field += "\r\n";
        } else if (is_header_start(l)) {
            flush_field();
            name = std::string(l.substr(0, l.find(':')));
            field = std::string(l) + "\r\n";
        } else {
            break;  // not a header: the rest is body (a separator line is added)
        }
        pos = next;
    }
    if (in_headers) flush_field();
    p.rcpts = resent ? std::move(resent_rcpts) : std::move(plain_rcpts);
    std::string added;
    if (!has_from) {
        added += "From: ";
        if (!o.full_name.empty()) added += "\"" + o.full_name + "\" ";
        added += "<" + o.sender + ">\r\n";
    }
    p.text = headers + added + "\r\n";
    p.text.append(msg.substr(pos));
    return p;
}

}  // namespace mta::queue
