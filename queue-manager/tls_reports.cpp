// TLS-RPT aggregation and report submission (see tls_reports.h).
#include "queue-manager/tls_reports.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "common/fd.h"
#include "common/json.h"
#include "common/log.h"
#include "common/text.h"
#include "common/wire/maildrop.h"

namespace mta::queue {
namespace {

constexpr uint64_t kDay = 86400;
constexpr std::size_t kMaxRua = 8;  // addresses per policy domain that get its report

// The usable addresses of a comma-separated rua list, at most kMaxRua.
std::vector<std::string> split_rua(std::string_view s) {
    std::vector<std::string> out;
    for (std::string_view a : split(s, ','))
        if (out.size() < kMaxRua && wire::maildrop_address_ok(a)) out.emplace_back(a);
    return out;
}

bool write_maildrop(const std::string& dir, const std::string& name, const std::string& bytes, std::string& err) {
    std::string tmp = dir + "/t" + name, final_name = dir + "/m" + name;
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    std::size_t off = 0;
    while (fd && off < bytes.size()) {
        ssize_t n = ::write(fd.get(), bytes.data() + off, bytes.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += std::size_t(n);
    }
    if (!fd || off != bytes.size() || fsync(fd.get()) != 0 || rename(tmp.c_str(), final_name.c_str()) != 0) {
        err = tmp + ": " + strerror(errno);
        unlink(tmp.c_str());
        return false;
    }
    return true;
}

}  // namespace

void TlsReports::configure(const Config& cfg) {
    enabled_ = cfg.tlsrpt_reports;
    hostname_ = cfg.hostname;
    from_ = cfg.tlsrpt_from.empty() ? "postmaster@" + cfg.hostname : cfg.tlsrpt_from;
    organization_ = cfg.tlsrpt_organization.empty() ? cfg.hostname : cfg.tlsrpt_organization;
}

bool TlsReports::add(std::string_view encoded, std::string_view rua, uint64_t now, std::string& err) {
    tlsrpt::Aggregate one;
    if (!tlsrpt::Aggregate::decode(encoded, one, err)) return false;
    std::vector<std::string> to = split_rua(rua);
    if (to.empty()) { err = "no usable rua address"; return false; }
    if (!enabled_) return true;  // turned off since mta-smtp counted: dropped
    if (!start_) start_ = now;
    for (auto& d : one.domains()) rua_[d] = to;
    agg_.merge(one);
    dirty_ = true;
    return true;
}

std::string TlsReports::tick(uint64_t now) {
    if (!start_ || now / kDay == start_ / kDay) return "";
    return send((start_ / kDay + 1) * kDay);  // the period ends at the midnight after it began
}

std::string TlsReports::send(uint64_t now) {
    if (agg_.empty()) {
        start_ = 0;
        return "no TLS results to report\n";
    }
    std::size_t sent = 0, failed = 0;
    uint64_t uid = getuid();
    for (const std::string& domain : agg_.domains()) {
        auto r = rua_.find(domain);
        if (r == rua_.end() || r->second.empty()) continue;
        sent_++;
        tlsrpt::ReportMeta meta;
        meta.organization = organization_;
        meta.contact = from_;
        meta.start = start_;
        meta.end = now;
        meta.report_id = std::to_string(start_) + "." + std::to_string(getpid()) + "." + std::to_string(sent_) + "@" + hostname_;
        tlsrpt::MessageMeta mm;
        mm.from = from_;
        mm.to = r->second.front();
        mm.submitter = hostname_;
        mm.message_id = "tlsrpt." + meta.report_id;
        std::string err;
        wire::Maildrop md;
        md.uid = uid;
        md.rcpts = r->second;
        md.body = tlsrpt::report_message(agg_, domain, meta, mm, err);
        std::string name = std::to_string(now) + "." + std::to_string(getpid()) + "-tlsrpt-" + std::to_string(sent_);
        if (md.body.empty() || !write_maildrop(maildrop_, name, wire::encode_maildrop(md), err)) {
            LOG_ERROR("event=tlsrpt_failed domain=%s reason=\"%s\"", log::safe(domain).c_str(), log::safe(err).c_str());
            failed++;
            continue;
        }
        LOG_INFO("event=tlsrpt_sent domain=%s to=<%s> period=%llu-%llu", log::safe(domain).c_str(),
                 log::safe(join(r->second)).c_str(), (unsigned long long)start_, (unsigned long long)now);
        sent++;
    }
    agg_ = {};
    rua_.clear();
    start_ = 0;
    dirty_ = true;
    return "ok: " + std::to_string(sent) + " TLS report" + (sent == 1 ? "" : "s") + " queued" +
           (failed ? ", " + std::to_string(failed) + " failed (see the log)" : "") + "\n";
}

// "tlsrpt/period": "START " + the encoded aggregate; "tlsrpt/rua": "domain addr,addr\n" lines.
void TlsReports::load(std::string_view key, std::string_view value) {
    std::string err;
    if (key == "tlsrpt/period") {
        std::size_t sp = value.find(' ');
        tlsrpt::Aggregate a;
        uint64_t start = 0;
        std::string head(value.substr(0, sp == std::string_view::npos ? 0 : sp));
        if (head.empty() || head.find_first_not_of("0123456789") != std::string::npos || head.size() > 12 ||
            !tlsrpt::Aggregate::decode(value.substr(sp + 1), a, err)) {
            LOG_WARN("event=state_unreadable key=tlsrpt/period reason=\"%s\"", err.empty() ? "bad start" : err.c_str());
            return;
        }
        start = std::stoull(head);
        start_ = a.empty() ? 0 : start;
        agg_ = std::move(a);
    } else if (key == "tlsrpt/rua") {
        std::size_t i = 0;
        while (i < value.size()) {
            std::size_t nl = value.find('\n', i);
            if (nl == std::string_view::npos) nl = value.size();
            std::string_view line = value.substr(i, nl - i);
            std::size_t sp = line.find(' ');
            if (sp != std::string_view::npos) rua_[std::string(line.substr(0, sp))] = split_rua(line.substr(sp + 1));
            i = nl + 1;
        }
    }
}

std::vector<std::pair<std::string, std::string>> TlsReports::dirty() {
    if (!dirty_) return {};
    dirty_ = false;
    std::string rua;
    for (auto& [d, a] : rua_) rua += d + " " + join(a) + "\n";
    return {{"tlsrpt/period", std::to_string(start_) + " " + agg_.encode()}, {"tlsrpt/rua", rua}};
}

std::string TlsReports::list_text(uint64_t now) const {
    std::string s = std::string("TLS reporting is ") + (enabled_ ? "on" : "off (tlsrpt_reports = no)") + "\n";
    if (agg_.empty()) return s + "No TLS results in this period\n";
    s += "Period since " + tlsrpt::rfc3339(start_) + " (now " + tlsrpt::rfc3339(now) + "):\n";
    for (const std::string& d : agg_.domains()) {
        auto r = rua_.find(d);
        s += "  " + d + "  rua " + (r == rua_.end() ? std::string("-") : join(r->second)) + "\n";
        for (const tlsrpt::Policy& p : agg_.policies(d)) {
            s += "    " + p.type + ": " + std::to_string(p.successes) + " successful, " + std::to_string(p.failures) +
                 " failed sessions\n";
            for (const tlsrpt::FailureDetail& f : p.details)
                s += "      " + f.result_type + " " + f.receiving_mx_hostname + "[" + f.receiving_ip + "]: " +
                     std::to_string(f.count) + "\n";
        }
    }
    return s;
}

std::string TlsReports::list_json(uint64_t now) const {
    std::string s = "{\"now\":" + std::to_string(now) + ",\"enabled\":" + (enabled_ ? "true" : "false") +
                    ",\"start\":" + std::to_string(start_) + ",\"domains\":[";
    bool first = true;
    for (const std::string& d : agg_.domains()) {
        auto r = rua_.find(d);
        s += std::string(first ? "" : ",") + "{\"domain\":" + json_string(d) + ",\"rua\":[";
        first = false;
        if (r != rua_.end())
            for (std::size_t i = 0; i < r->second.size(); i++) s += (i ? "," : "") + json_string(r->second[i]);
        s += "],\"report\":" + tlsrpt::report_json(agg_, d, tlsrpt::ReportMeta{organization_, from_, "", start_, now}) + "}";
    }
    return s + "]}\n";
}

}  // namespace mta::queue
