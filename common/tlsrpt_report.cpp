// RFC 8460 TLS reporting, the report side: the JSON report, gzip, the report message and the
// _smtp._tls record parser (common/tlsrpt.h). Bytes from DNS are never trusted.
#include "common/tlsrpt.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "common/address.h"
#include "common/base64.h"
#include "common/json.h"
#include "common/mail_headers.h"

namespace mta::tlsrpt {
namespace {

constexpr uint64_t kMaxTime = 253402300799;  // 9999-12-31T23:59:59Z, the last RFC 3339 second

// --- text helpers

// A header or text-part value: printable ASCII without angle brackets, at most max bytes.
std::string header_text(std::string_view s, std::size_t max) {
    std::string out;
    for (char c : s.substr(0, max)) out += (c > 0x20 && c < 0x7f && c != '<' && c != '>') ? c : '_';
    return out;
}

std::string unbracket(std::string_view s) {
    if (s.size() >= 2 && s.front() == '<' && s.back() == '>') s = s.substr(1, s.size() - 2);
    return header_text(s, 512);
}

// Only the characters a domain name uses, for the filename.
std::string filename_domain(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, kMaxField))
        if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') out += c;
    return addr::lower(out);
}

void json_field(std::string& j, const char* name, std::string_view value) {
    j += ",\"";
    j += name;
    j += "\":";
    j += json_string(value);
}

void json_optional(std::string& j, const char* name, std::string_view value) {
    if (!value.empty()) json_field(j, name, value);
}

void json_array(std::string& j, const std::vector<std::string>& v) {
    j += "[";
    for (std::size_t i = 0; i < v.size(); i++) {
        if (i) j += ",";
        j += json_string(v[i]);
    }
    j += "]";
}

bool wsp(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && wsp(s.front())) s.remove_prefix(1);
    while (!s.empty() && wsp(s.back())) s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) { return addr::lower(a) == addr::lower(b); }

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// RFC 5322 dot-atom text and an LDH domain of at least two labels: the addresses worth mailing.
bool plausible_address(std::string_view a) {
    constexpr std::string_view kAtext = "!#$%&'*+-/=?^_`{|}~.";
    std::size_t at = a.find('@');
    if (at == std::string_view::npos || at == 0 || at > 64 || a.find('@', at + 1) != std::string_view::npos)
        return false;
    std::string_view local = a.substr(0, at), domain = a.substr(at + 1);
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) return false;
    for (char c : local)
        if (!std::isalnum(static_cast<unsigned char>(c)) && kAtext.find(c) == std::string_view::npos) return false;
    if (domain.empty() || domain.size() > 253) return false;
    std::size_t labels = 0;
    while (true) {
        std::size_t dot = domain.find('.');
        std::string_view label = domain.substr(0, dot);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
        for (char c : label)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
        labels++;
        if (dot == std::string_view::npos) break;
        domain.remove_prefix(dot + 1);
    }
    return labels >= 2;
}

// "mailto:" already removed: drop any ?query, percent-decode, check.
bool mailto_address(std::string_view uri, std::string& out) {
    uri = uri.substr(0, uri.find('?'));
    std::string a;
    for (std::size_t i = 0; i < uri.size(); i++) {
        if (uri[i] != '%') {
            a += uri[i];
            continue;
        }
        if (i + 2 >= uri.size()) return false;
        int hi = hex_value(uri[i + 1]), lo = hex_value(uri[i + 2]);
        if (hi < 0 || lo < 0) return false;
        a += char(hi * 16 + lo);
        i += 2;
    }
    if (!plausible_address(a)) return false;
    out = std::move(a);
    return true;
}

bool https_uri(std::string_view uri) {
    if (uri.size() <= 8 || !iequals(uri.substr(0, 8), "https://") || uri.size() > 2048) return false;
    for (char c : uri)
        if (c <= 0x20 || c >= 0x7f) return false;
    return uri[8] != '/';
}

// tlsrpt-ext-name: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
bool ext_name(std::string_view n) {
    if (n.empty() || n.size() > 32 || !std::isalnum(static_cast<unsigned char>(n[0]))) return false;
    for (char c : n)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') return false;
    return true;
}

void add_unique(std::vector<std::string>& v, std::string s) {
    if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(std::move(s));
}

}  // namespace

// --- the report

std::string rfc3339(uint64_t t) {
    t = std::min(t, kMaxTime);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian, eras of 400 years from 0000-03-01).
    uint64_t z = t / 86400 + 719468, secs = t % 86400;
    uint64_t era = z / 146097, doe = z - era * 146097;
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    uint64_t mp = (5 * doy + 2) / 153;
    uint64_t day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
    uint64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
    char buf[40];
    snprintf(buf, sizeof buf, "%04u-%02u-%02uT%02u:%02u:%02uZ", unsigned(year), unsigned(month), unsigned(day),
             unsigned(secs / 3600), unsigned(secs / 60 % 60), unsigned(secs % 60));
    return buf;
}

std::string report_json(const Aggregate& agg, const std::string& domain, const ReportMeta& meta) {
    std::string j = "{\"organization-name\":";
    j += json_string(meta.organization);
    j += ",\"date-range\":{\"start-datetime\":";
    j += json_string(rfc3339(meta.start));
    j += ",\"end-datetime\":";
    j += json_string(rfc3339(meta.end));
    j += "}";
    json_field(j, "contact-info", meta.contact);
    json_field(j, "report-id", meta.report_id);
    j += ",\"policies\":[";
    bool first = true;
    for (auto& p : agg.policies(domain)) {
        j += first ? "" : ",";
        first = false;
        j += "{\"policy\":{\"policy-type\":";
        j += json_string(p.type);
        j += ",\"policy-string\":";
        json_array(j, p.strings);
        json_field(j, "policy-domain", p.domain);
        if (!p.mx_host_patterns.empty()) {
            j += ",\"mx-host\":";
            json_array(j, p.mx_host_patterns);
        }
        j += "},\"summary\":{\"total-successful-session-count\":";
        j += std::to_string(p.successes);
        j += ",\"total-failure-session-count\":";
        j += std::to_string(p.failures);
        j += "},\"failure-details\":[";
        for (std::size_t i = 0; i < p.details.size(); i++) {
            const FailureDetail& d = p.details[i];
            j += i ? ",{\"result-type\":" : "{\"result-type\":";
            j += json_string(d.result_type);
            // Empty means unknown (a policy fetch failure has no MX): left out rather than sent as "".
            json_optional(j, "sending-mta-ip", d.sending_mta_ip);
            json_optional(j, "receiving-mx-hostname", d.receiving_mx_hostname);
            json_optional(j, "receiving-mx-helo", d.receiving_mx_helo);
            json_optional(j, "receiving-ip", d.receiving_ip);
            j += ",\"failed-session-count\":";
            j += std::to_string(d.count);
            json_optional(j, "additional-information", d.additional_information);
            json_optional(j, "failure-reason-code", d.failure_reason_code);
            j += "}";
        }
        j += "]}";
    }
    j += "]}";
    return j;
}

bool gzip(std::string_view in, std::string& out, std::string& err) {
    z_stream zs{};
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        err = "deflateInit2 failed";
        return false;
    }
    struct End {
        z_stream* zs;
        ~End() { deflateEnd(zs); }
    } end{&zs};
    std::string buf;
    std::size_t left = in.size();
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    char chunk[16384];
    for (;;) {
        if (zs.avail_in == 0 && left > 0) {
            zs.avail_in = uInt(std::min<std::size_t>(left, 1u << 30));
            left -= zs.avail_in;
        }
        zs.next_out = reinterpret_cast<Bytef*>(chunk);
        zs.avail_out = sizeof chunk;
        int rc = deflate(&zs, left == 0 ? Z_FINISH : Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            err = std::string("deflate failed: ") + (zs.msg ? zs.msg : "error " + std::to_string(rc));
            return false;
        }
        buf.append(chunk, sizeof chunk - zs.avail_out);
        if (rc == Z_STREAM_END) break;
    }
    out = std::move(buf);
    return true;
}

bool parse_record(std::string_view txt, Rua& out, std::string& err) {
    constexpr std::string_view kVersion = "v=TLSRPTv1";
    if (txt.substr(0, kVersion.size()) != kVersion) {
        err = "not a TLSRPT record (no v=TLSRPTv1 first)";
        return false;
    }
    std::string_view rest = trim(txt.substr(kVersion.size()));
    if (!rest.empty() && rest[0] != ';') {
        err = "not a TLSRPT record (v=TLSRPTv1 not followed by ';')";
        return false;
    }
    Rua rua;
    bool have_rua = false;
    while (!rest.empty()) {
        rest.remove_prefix(1);  // the ';'
        std::size_t semi = rest.find(';');
        std::string_view field = trim(rest.substr(0, semi));
        rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi);
        if (field.empty()) continue;  // a trailing ';'
        std::size_t eq = field.find('=');
        std::string_view name = eq == std::string_view::npos ? field : trim(field.substr(0, eq));
        if (eq == std::string_view::npos || !ext_name(name)) {
            err = "malformed field \"" + header_text(field, 64) + "\"";
            return false;
        }
        if (name != "rua") continue;  // extensions are ignored
        have_rua = true;
        std::string_view list = field.substr(eq + 1);
        while (!list.empty()) {
            std::size_t comma = list.find(',');
            std::string_view uri = trim(list.substr(0, comma));
            list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
            std::size_t colon = uri.find(':');
            std::string_view scheme = uri.substr(0, colon);
            std::string address;
            if (colon == std::string_view::npos) continue;
            if (iequals(scheme, "mailto") && mailto_address(uri.substr(colon + 1), address))
                add_unique(rua.mailto, std::move(address));
            else if (iequals(scheme, "https") && https_uri(uri))
                add_unique(rua.https, std::string(uri));
        }
    }
    if (rua.mailto.empty() && rua.https.empty()) {
        err = have_rua ? "no usable rua URI" : "no rua";
        return false;
    }
    out = std::move(rua);
    return true;
}

// --- the message

std::string report_filename(const std::string& domain, const ReportMeta& meta, const MessageMeta& mm) {
    std::string fn = filename_domain(mm.submitter);
    fn += "!";
    fn += filename_domain(domain);
    fn += "!";
    fn += std::to_string(meta.start);
    fn += "!";
    fn += std::to_string(meta.end);
    std::string id;
    for (char c : meta.report_id)
        if (std::isalnum(static_cast<unsigned char>(c)) && id.size() < 64) id += c;
    if (!id.empty()) {
        fn += "!";
        fn += id;
    }
    fn += ".json.gz";
    return fn;
}

std::string report_message(const Aggregate& agg, const std::string& domain, const ReportMeta& meta,
                           const MessageMeta& mm, std::string& err) {
    std::string gz;
    if (!gzip(report_json(agg, domain, meta), gz, err)) return "";
    uint64_t ok = 0, failed = 0;
    for (auto& p : agg.policies(domain)) {
        ok = ok > UINT64_MAX - p.successes ? UINT64_MAX : ok + p.successes;  // the counts saturate
        failed = failed > UINT64_MAX - p.failures ? UINT64_MAX : failed + p.failures;
    }
    const std::string dom = header_text(domain, kMaxField), sub = header_text(mm.submitter, kMaxField);
    // Base64 and the text below never start a line with "--=_", so the boundary cannot occur in them.
    const std::string boundary = "=_tlsrpt_" + std::to_string(meta.start) + "_" + std::to_string(meta.end);
    std::string s;
    s += "From: <" + unbracket(mm.from) + ">\r\n";
    s += "To: <" + unbracket(mm.to) + ">\r\n";
    s += "Date: " + rfc5322_date(std::time_t(std::min(meta.end, kMaxTime))) + "\r\n";
    s += "Message-ID: <" + unbracket(mm.message_id) + ">\r\n";
    // §5.3: the Subject, folded as the RFC's example is.
    s += "Subject: Report Domain: " + dom + "\r\n";
    s += " Submitter: " + sub + "\r\n";
    s += " Report-ID: <" + header_text(meta.report_id, 255) + ">\r\n";
    s += "TLS-Report-Domain: " + dom + "\r\n";
    s += "TLS-Report-Submitter: " + sub + "\r\n";
    s += "MIME-Version: 1.0\r\n";
    s += "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"" + boundary + "\"\r\n";
    s += "\r\nThis is a multipart message in MIME format.\r\n\r\n";

    s += "--" + boundary + "\r\n";
    s += "Content-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
    s += "This is an aggregate TLS report (RFC 8460) from " + sub + "\r\n";
    s += "for the policy domain " + dom + ",\r\n";
    s += "covering " + rfc3339(meta.start) + " to " + rfc3339(meta.end) + ".\r\n\r\n";
    s += "Successful TLS sessions: " + std::to_string(ok) + "\r\n";
    s += "Failed TLS sessions: " + std::to_string(failed) + "\r\n\r\n";
    s += "The details are in the attached gzip-compressed JSON report.\r\n\r\n";

    s += "--" + boundary + "\r\n";
    s += "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n";
    s += "Content-Disposition: attachment;\r\n\tfilename=\"" + report_filename(domain, meta, mm) + "\"\r\n\r\n";
    std::string b64 = base64_encode(gz);
    for (std::size_t i = 0; i < b64.size(); i += 76) {
        s.append(b64, i, 76);
        s += "\r\n";
    }
    s += "\r\n--" + boundary + "--\r\n";
    return s;
}

}  // namespace mta::tlsrpt
