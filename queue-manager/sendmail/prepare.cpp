// sendmail's message preparation (pure, no I/O).
#include "queue-manager/sendmail/prepare.h"

namespace mta::sendmail {
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

}  // namespace mta::sendmail
