// RFC 5322 dates, our Message-ID, and the header-section scanner (see mail_headers.h). A line is held
// back only while it is still unknown whether it is a header field, and never longer than a header
// name can be, so the memory used stays bounded whatever the client sends.
#include "common/mail_headers.h"

#include <cstdio>

namespace mta {
namespace {

constexpr std::size_t kMaxName = 998;  // RFC 5322's line limit: a longer "name" is no name
constexpr std::size_t kNameKept = 16;  // enough to tell message-id, date and received apart

char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }

}  // namespace

std::string rfc5322_date(std::time_t t, long gmtoff) {
    static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::time_t local = t + gmtoff;
    struct tm tm {};
    gmtime_r(&local, &tm);
    long off = gmtoff < 0 ? -gmtoff : gmtoff;
    char buf[64];
    snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld", kDays[tm.tm_wday], tm.tm_mday,
             kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, gmtoff < 0 ? '-' : '+',
             off / 3600, (off % 3600) / 60);
    return buf;
}

std::string make_message_id(std::time_t t, std::string_view qid, std::string_view hostname) {
    struct tm tm {};
    gmtime_r(&t, &tm);
    char stamp[32];
    snprintf(stamp, sizeof stamp, "%04d%02d%02d%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    return "<" + std::string(stamp) + "." + std::string(qid) + "@" + std::string(hostname) + ">";
}

HeaderSection::HeaderSection(MissingHeaders add)
    : add_(std::move(add)), hold_(!add_.message_id.empty() || !add_.date.empty()) {}

// One more byte of a line not yet classified (RFC 5322 §2.2 field name, §4.5.3 obsolete "Name :").
void HeaderSection::classify(char c) {
    if (line_len_ == 0 && (c == ' ' || c == '\t')) {
        line_ = seen_field_ ? Line::continuation : Line::other;
    } else if (c == ':') {
        line_ = name_.empty() ? Line::other : Line::field;
        if (line_ != Line::field) return;
        seen_field_ = true;
        has_msgid_ = has_msgid_ || name_ == "message-id";
        has_date_ = has_date_ || name_ == "date";
        if (name_ == "received") received_++;
    } else if (c == ' ' || c == '\t') {
        name_space_ = true;
    } else if (name_space_ || static_cast<unsigned char>(c) < 33 || static_cast<unsigned char>(c) > 126) {
        line_ = Line::other;
    } else if (name_.size() < kNameKept) {
        name_ += lower(c);
    }
}

void HeaderSection::close_section(std::string& out, bool blank_after) {
    in_headers_ = false;
    std::string add;
    if (!has_msgid_ && !add_.message_id.empty()) add += "Message-ID: " + add_.message_id + "\r\n";
    if (!has_date_ && !add_.date.empty()) add += "Date: " + add_.date + "\r\n";
    if (add.empty()) return;
    out += add;
    if (blank_after) out += "\r\n";
}

void HeaderSection::text(std::string_view s, std::string& out) {
    if (!in_headers_ || line_ != Line::unknown) {
        out.append(s);
        return;
    }
    std::size_t i = 0;
    while (line_ == Line::unknown && i < s.size()) {
        classify(s[i++]);
        if (++line_len_ >= kMaxName && line_ == Line::unknown) line_ = Line::other;
    }
    (hold_ ? held_ : out).append(s.substr(0, i));
    if (line_ == Line::unknown) return;
    if (line_ == Line::other) close_section(out, true);  // the body starts without an empty line
    out += held_;
    held_.clear();
    out.append(s.substr(i));
}

void HeaderSection::line_end(std::string& out) {
    if (in_headers_ && line_ == Line::unknown) {
        close_section(out, line_len_ != 0);  // the empty line, or a line without a colon
        out += held_;
        held_.clear();
    }
    out += "\r\n";
    line_ = Line::unknown;
    line_len_ = 0;
    name_space_ = false;
    name_.clear();
}

void HeaderSection::end(std::string& out) {
    if (!in_headers_) return;
    if (line_len_ == 0 || line_ == Line::unknown) {  // all headers; or a last line that is no field
        close_section(out, line_len_ != 0);
        out += held_;
        held_.clear();
        return;
    }
    // A field with no CRLF at the very end (BDAT allows it): end its line before adding ours.
    std::string tail;
    close_section(tail, false);
    if (!tail.empty()) out += "\r\n" + tail;
}

std::string with_missing_headers(std::string_view message, const MissingHeaders& add) {
    HeaderSection h(add);
    std::string out;
    out.reserve(message.size() + 200);
    std::size_t pos = 0;
    while (pos < message.size() && h.in_headers()) {
        std::size_t eol = message.find("\r\n", pos);
        if (eol == std::string_view::npos) {
            h.text(message.substr(pos), out);
            pos = message.size();
            break;
        }
        h.text(message.substr(pos, eol - pos), out);
        h.line_end(out);
        pos = eol + 2;
    }
    out.append(message.substr(pos));
    h.end(out);
    return out;
}

}  // namespace mta
