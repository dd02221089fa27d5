// DKIM header and body canonicalization and h= field selection (see dkim_canon.h).
#include "msgauth/dkim_canon.h"

#include <algorithm>

#include "common/address.h"

namespace mta::msgauth {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

// RFC 5322 ftext: printable ASCII except ':'.
bool valid_field_name(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x21 || u > 0x7e || c == ':') return false;
    }
    return true;
}

HeaderField make_field(std::string_view line) {
    HeaderField f;
    f.raw = std::string(line);
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return f;
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && is_blank(name.back())) name.remove_suffix(1);
    if (valid_field_name(name)) {
        f.name = std::string(name);
        f.value_offset = colon + 1;
    }
    return f;
}

}  // namespace

bool parse_header_section(std::string_view message, HeaderSection& out, std::string& err) {
    out = HeaderSection{};
    std::size_t pos = 0, bytes = 0;
    while (pos < message.size()) {
        std::size_t nl = message.find('\n', pos);
        std::size_t next = nl == std::string_view::npos ? message.size() : nl + 1;
        std::size_t end = nl == std::string_view::npos ? message.size() : nl;
        if (end > pos && nl != std::string_view::npos && message[end - 1] == '\r') end--;
        std::string_view line = message.substr(pos, end - pos);
        if (line.empty() && nl != std::string_view::npos) {
            out.body_offset = next;
            return true;
        }
        bytes += next - pos;
        if (bytes > kMaxHeaderBytes) {
            err = "header section too large";
            return false;
        }
        if (is_blank(line.front()) && !out.fields.empty()) {
            out.fields.back().raw.append("\r\n").append(line);
        } else {
            if (out.fields.size() == kMaxHeaderFields) {
                err = "too many header fields";
                return false;
            }
            out.fields.push_back(make_field(line));
        }
        pos = next;
    }
    out.body_offset = message.size();
    return true;
}

void canon_header(DkimCanon c, std::string_view raw, bool crlf, std::string& out) {
    if (c == DkimCanon::simple) {
        out.append(raw);
    } else {
        std::size_t colon = std::min(raw.find(':'), raw.size());
        std::string_view name = raw.substr(0, colon);
        while (!name.empty() && is_blank(name.back())) name.remove_suffix(1);
        out.append(addr::lower(name)).push_back(':');
        bool started = false, blank = false;
        for (std::size_t i = colon + 1; i < raw.size(); i++) {
            char ch = raw[i];
            if (ch == '\r' || ch == '\n') continue;
            if (is_blank(ch)) {
                blank = true;
                continue;
            }
            if (blank && started) out.push_back(' ');
            blank = false;
            started = true;
            out.push_back(ch);
        }
    }
    if (crlf) out.append("\r\n");
}

std::vector<const HeaderField*> select_headers(const std::vector<HeaderField>& fields,
                                               const std::vector<std::string>& names) {
    std::vector<const HeaderField*> picked;
    std::vector<std::pair<std::string_view, std::size_t>> used;  // name -> instances taken so far
    for (const std::string& name : names) {
        auto it = std::find_if(used.begin(), used.end(), [&](const auto& u) { return iequals(u.first, name); });
        if (it == used.end()) it = used.insert(used.end(), {name, 0});
        std::size_t skip = it->second++;
        const HeaderField* hit = nullptr;
        for (auto f = fields.rbegin(); f != fields.rend(); ++f) {
            if (!iequals(f->name, name)) continue;
            if (skip-- == 0) {
                hit = &*f;
                break;
            }
        }
        picked.push_back(hit);
    }
    return picked;
}

std::string canonical_header_data(DkimCanon c, const std::vector<HeaderField>& fields,
                                  const std::vector<std::string>& names, std::string_view signature_field) {
    std::string data;
    for (const HeaderField* f : select_headers(fields, names))
        if (f) canon_header(c, f->raw, true, data);
    canon_header(c, signature_field, false, data);
    return data;
}

void BodyCanonicalizer::emit(const char* p, std::size_t n, std::string& out) {
    if (size_ < limit_) out.append(p, static_cast<std::size_t>(std::min<uint64_t>(n, limit_ - size_)));
    size_ += n;
}

void BodyCanonicalizer::content(const char* p, std::size_t n, std::string& out) {
    if (!line_has_content_) {
        for (; empty_lines_ > 0; empty_lines_--) emit("\r\n", 2, out);
        line_has_content_ = true;
    }
    if (wsp_pending_) {
        emit(" ", 1, out);
        wsp_pending_ = false;
    }
    emit(p, n, out);
}

void BodyCanonicalizer::line_end(std::string& out) {
    wsp_pending_ = false;  // relaxed: blanks at the end of a line are dropped
    if (line_has_content_) {
        emit("\r\n", 2, out);
        line_has_content_ = false;
    } else {
        empty_lines_++;
    }
}

void BodyCanonicalizer::feed(std::string_view chunk, std::string& out) {
    const bool relaxed = canon_ == DkimCanon::relaxed;
    std::size_t i = 0;
    const std::size_t n = chunk.size();
    if (cr_pending_ && n > 0) {
        cr_pending_ = false;
        if (chunk[0] == '\n') {
            line_end(out);
            i = 1;
        } else {
            content("\r", 1, out);
        }
    }
    while (i < n) {
        char c = chunk[i];
        if (c == '\r') {
            if (i + 1 == n) {
                cr_pending_ = true;
                return;
            }
            if (chunk[i + 1] == '\n') {
                line_end(out);
                i += 2;
            } else {
                content(&chunk[i], 1, out);
                i++;
            }
        } else if (c == '\n') {
            line_end(out);
            i++;
        } else if (relaxed && is_blank(c)) {
            wsp_pending_ = true;
            i++;
        } else {
            std::size_t j = i + 1;
            while (j < n && chunk[j] != '\r' && chunk[j] != '\n' && !(relaxed && is_blank(chunk[j]))) j++;
            content(&chunk[i], j - i, out);
            i = j;
        }
    }
}

void BodyCanonicalizer::finish(std::string& out) {
    if (cr_pending_) {
        cr_pending_ = false;
        content("\r", 1, out);
    }
    wsp_pending_ = false;
    if (line_has_content_) {
        emit("\r\n", 2, out);  // a body not ending in CRLF gets one
        line_has_content_ = false;
    }
    empty_lines_ = 0;
    if (canon_ == DkimCanon::simple && size_ == 0) emit("\r\n", 2, out);
}

}  // namespace mta::msgauth
