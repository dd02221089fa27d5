// Admin command parsing, filter matching and listing formats (text for people, JSON for scripts).
// The command text comes from any local user through mtad, so parsing is strict and bounded.
#include "queue-manager/admin.h"

#include <cstdio>
#include <ctime>
#include <map>

#include "common/address.h"
#include "common/config.h"
#include "common/routing.h"
#include "common/text.h"
#include "queue-manager/envelope.h"
#include "queue-manager/qid.h"

namespace mta::queue {
namespace {

constexpr std::size_t kMaxIds = 10000;

std::vector<std::string_view> words(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && s[i] == ' ') i++;
        std::size_t j = s.find(' ', i);
        if (j == std::string_view::npos) j = s.size();
        if (j > i) out.push_back(s.substr(i, j - i));
        i = j;
    }
    return out;
}

const char* notify_text(uint64_t n, std::string& buf) {
    buf.clear();
    if (n == 0) return "";
    static const struct { uint64_t bit; const char* name; } names[] = {
        {1, "NEVER"}, {2, "SUCCESS"}, {4, "FAILURE"}, {8, "DELAY"}};
    for (auto& x : names)
        if (n & x.bit) buf += (buf.empty() ? "" : ",") + std::string(x.name);
    return buf.c_str();
}

// "stats [--json]", "suppression list|add|remove [ADDRESS...] [--ttl DUR] [--json]".
bool parse_counters_or_list(const std::vector<std::string_view>& w, AdminCommand& out, std::string& err) {
    std::size_t i = 1;
    if (out.verb == "suppression") {
        if (w.size() < 2 || (w[1] != "list" && w[1] != "add" && w[1] != "remove")) {
            err = "suppression needs list, add or remove";
            return false;
        }
        out.sub = std::string(w[1]);
        i = 2;
    }
    for (; i < w.size(); i++) {
        std::string_view a = w[i];
        if (a == "--json") {
            out.json = true;
        } else if (a == "--ttl" && out.sub == "add") {
            if (i + 1 >= w.size() || !parse_duration(w[++i], out.ttl) || out.ttl == 0) {
                err = "bad duration for --ttl";
                return false;
            }
        } else if (!out.sub.empty() && out.sub != "list" && a.substr(0, 2) != "--") {
            std::size_t at = a.rfind('@');
            if (a.size() > kMaxAddress || at == std::string_view::npos || at == 0 || at + 1 == a.size() ||
                !addr::utf8_valid(a)) {
                err = "not an address: \"" + printable(a.substr(0, 200)) + "\"";
                return false;
            }
            if (out.addresses.size() >= kMaxIds) { err = "too many addresses"; return false; }
            out.addresses.push_back(addr::lower(a));
        } else {
            err = "unexpected argument \"" + printable(a) + "\"";
            return false;
        }
    }
    if (!out.sub.empty() && out.sub != "list" && out.addresses.empty()) {
        err = "suppression " + out.sub + " needs at least one address";
        return false;
    }
    return true;
}

// "warmup [list] [--json]", "warmup set IP-ADDRESS --first-used YYYY-MM-DD".
bool parse_warmup(const std::vector<std::string_view>& w, AdminCommand& out, std::string& err) {
    std::size_t i = 1;
    out.sub = "list";
    if (w.size() > 1 && (w[1] == "list" || w[1] == "set")) out.sub = std::string(w[i++]);
    for (; i < w.size(); i++) {
        std::string_view a = w[i];
        if (a == "--json" && out.sub == "list") {
            out.json = true;
        } else if (a == "--first-used" && out.sub == "set") {
            if (i + 1 >= w.size() || !parse_utc_date(w[++i], out.first_day)) {
                err = "--first-used takes a date YYYY-MM-DD";
                return false;
            }
        } else if (out.sub == "set" && out.addresses.empty() && a.substr(0, 2) != "--") {
            SourceAddress sa;
            if (!parse_source_address(a, "", sa, err)) return false;
            out.addresses.push_back(sa.address);
        } else {
            err = "unexpected argument \"" + printable(a) + "\"";
            return false;
        }
    }
    if (out.sub == "set" && (out.addresses.empty() || !out.first_day)) {
        err = "warmup set needs an address and --first-used YYYY-MM-DD";
        return false;
    }
    return true;
}

// "tlsrpt [list] [--json]", "tlsrpt send".
bool parse_tlsrpt(const std::vector<std::string_view>& w, AdminCommand& out, std::string& err) {
    std::size_t i = 1;
    out.sub = "list";
    if (w.size() > 1 && (w[1] == "list" || w[1] == "send")) out.sub = std::string(w[i++]);
    for (; i < w.size(); i++) {
        if (w[i] != "--json" || out.sub != "list") {
            err = "unexpected argument \"" + printable(w[i]) + "\"";
            return false;
        }
        out.json = true;
    }
    return true;
}

}  // namespace

std::string printable(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if ((c >= 0x20 && c < 0x7f) || c == '\t') out += char(c);
        else {
            char b[8];
            snprintf(b, sizeof b, "\\x%02X", c);
            out += b;
        }
    }
    return out;
}

std::string utc_text(uint64_t t) {
    if (!t) return "-";
    time_t tt = time_t(t);
    struct tm tm {};
    gmtime_r(&tt, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
    return buf;
}

bool parse_admin(std::string_view line, AdminCommand& out, std::string& err) {
    out = AdminCommand{};
    if (line.size() > 64 * 1024) { err = "command too long"; return false; }
    for (char c : line)
        if (c < 0x20 || c == 0x7f) { err = "control character in command"; return false; }
    auto w = words(line);
    if (w.empty()) { err = "no command"; return false; }
    out.verb = std::string(w[0]);
    static const char* verbs[] = {"list", "show", "hold", "release", "delete", "flush", "requeue", "stats",
                                  "suppression", "warmup", "tlsrpt", "why"};
    bool known = false;
    for (auto* v : verbs) known = known || out.verb == v;
    if (!known) { err = "unknown command \"" + printable(out.verb) + "\""; return false; }
    if (out.verb == "stats" || out.verb == "suppression") return parse_counters_or_list(w, out, err);
    if (out.verb == "warmup") return parse_warmup(w, out, err);
    if (out.verb == "tlsrpt") return parse_tlsrpt(w, out, err);
    AdminFilter& f = out.filter;
    for (std::size_t i = 1; i < w.size(); i++) {
        std::string_view a = w[i];
        auto value = [&](std::string& into) {
            if (i + 1 >= w.size()) { err = std::string(a) + " needs a value"; return false; }
            into = addr::lower(w[++i]);
            if (into.size() > kMaxAddress) { err = std::string(a) + " value too long"; return false; }
            return true;
        };
        if (a == "--json") out.json = true;
        else if (a == "--corrupt") out.corrupt = true;
        else if (a == "--all") out.all = true;
        else if (a == "--from") { if (!value(f.from)) return false; }
        else if (a == "--to") { if (!value(f.to)) return false; }
        else if (a == "--domain") { if (!value(f.domain)) return false; }
        else if (a == "--state") {
            if (!value(f.state)) return false;
            static const char* states[] = {"queued", "deferred", "held", "bounced", "in-flight", "corrupt"};
            bool ok = false;
            for (auto* s : states) ok = ok || f.state == s;
            if (!ok) { err = "unknown state \"" + printable(f.state) + "\""; return false; }
        } else if (a == "--older-than") {
            std::string d;
            if (!value(d)) return false;
            if (!parse_duration(d, f.older_than) || f.older_than == 0) { err = "bad duration for --older-than"; return false; }
        } else if (auto id = parse_qid(a)) {
            if (f.ids.size() >= kMaxIds) { err = "too many queue ids"; return false; }
            f.ids.push_back(*id);
        } else {
            err = "unexpected argument \"" + printable(a) + "\"";
            return false;
        }
    }
    if ((out.verb == "show" || out.verb == "why") && f.ids.size() != 1) {
        err = out.verb + " needs exactly one queue id";
        return false;
    }
    if ((out.verb == "hold" || out.verb == "release" || out.verb == "delete") && f.empty() && !out.all) {
        err = out.verb + " needs queue ids, filters or --all";
        return false;
    }
    return true;
}

std::string rcpt_state_name(const RcptView& r) {
    if (r.inflight) return "in-flight";
    switch (r.rec.state) {
    case RcptState::queued: return "queued";
    case RcptState::deferred: return "deferred";
    case RcptState::bounced: return "bounced";
    case RcptState::held: return "held";
    }
    return "unknown";
}

std::string message_state_name(const MessageView& v) {
    if (v.msg.state == MessageState::corrupt) return "corrupt";
    // The most urgent recipient state names the message.
    static const char* order[] = {"in-flight", "queued", "deferred", "held", "bounced"};
    for (auto* s : order)
        for (auto& r : v.rcpts)
            if (rcpt_state_name(r) == s) return s;
    return "finished";
}

bool matches(const AdminFilter& f, const MessageView& v, uint64_t now) {
    if (!f.ids.empty()) {
        bool any = false;
        for (uint64_t id : f.ids) any = any || id == v.msgid;
        if (!any) return false;
    }
    if (!f.from.empty()) {
        std::string s = addr::lower(v.msg.sender);
        if (f.from == "<>" ? !s.empty() : s != f.from) return false;
    }
    if (f.older_than && (now < v.msg.arrival || now - v.msg.arrival < f.older_than)) return false;
    if (f.state == "corrupt") {
        if (v.msg.state != MessageState::corrupt) return false;
    } else if (!f.state.empty() && v.msg.state == MessageState::corrupt) {
        return false;
    }
    if (f.to.empty() && f.domain.empty() && (f.state.empty() || f.state == "corrupt")) return true;
    for (auto& r : v.rcpts) {
        if (!f.to.empty() && addr::lower(r.rec.addr) != f.to) continue;
        if (!f.domain.empty() && rcpt_domain(r.rec.addr) != f.domain) continue;
        if (!f.state.empty() && f.state != "corrupt" && rcpt_state_name(r) != f.state) continue;
        return true;
    }
    return false;
}


namespace {

std::string rcpt_json(const RcptView& r) {
    std::string nb;
    std::string s = "{\"index\":" + std::to_string(r.index) + ",\"address\":" + json_string(r.rec.addr) +
                    ",\"state\":" + json_string(rcpt_state_name(r)) + ",\"attempts\":" + std::to_string(r.rec.attempts);
    s += ",\"next_attempt\":" + std::to_string(r.rec.scheduled() ? r.rec.next_attempt : 0);
    s += ",\"last_attempt\":" + std::to_string(r.rec.last_attempt);
    s += ",\"last_error\":" + json_string(r.rec.last_error);
    s += ",\"orcpt\":" + json_string(r.rec.orcpt);
    s += ",\"notify\":" + json_string(notify_text(r.rec.notify, nb));
    s += ",\"class\":" + (r.rec.last_class ? json_string(bounce_class_name(BounceClass(r.rec.last_class)))
                                             : std::string("null"));
    s += ",\"delay_warned\":" + std::string(r.rec.flags & kRcptDelayWarned ? "true" : "false") + "}";
    return s;
}

std::string message_json(const MessageView& v, bool with_headers) {
    const MessageRecord& m = v.msg;
    std::string s = "{\"id\":\"" + format_qid(v.msgid) + "\",\"state\":" + json_string(message_state_name(v)) +
                    ",\"sender\":" + json_string(m.sender) + ",\"arrival\":" + std::to_string(m.arrival) +
                    ",\"size\":" + std::to_string(m.size) + ",\"envid\":" + json_string(m.envid) +
                    ",\"ret\":" + json_string(m.ret == 1 ? "FULL" : m.ret == 2 ? "HDRS" : "") +
                    ",\"client_addr\":" + json_string(m.client_addr) + ",\"client_helo\":" + json_string(m.client_helo) +
                    ",\"auth_user\":" + json_string(m.auth_user);
    s += ",\"submit_uid\":" + (m.submit_uid == kNoUid ? std::string("null") : std::to_string(m.submit_uid));
    s += ",\"hold_reason\":" + json_string(m.hold_reason);
    s += ",\"recipients\":[";
    for (std::size_t i = 0; i < v.rcpts.size(); i++) s += (i ? "," : "") + rcpt_json(v.rcpts[i]);
    s += "]";
    if (with_headers) s += ",\"headers\":" + json_string(v.headers);
    return s + "}";
}

std::string rcpt_lines(const RcptView& r, uint64_t now) {
    std::string s = "    " + printable(r.rec.addr) + "  [" + rcpt_state_name(r);
    if (r.rec.attempts) s += ", " + std::to_string(r.rec.attempts) + " attempt" + (r.rec.attempts == 1 ? "" : "s");
    if (r.rec.scheduled() && !r.inflight)
        s += r.rec.next_attempt <= now ? ", due now" : ", next " + utc_text(r.rec.next_attempt);
    s += "]\n";
    if (!r.rec.last_error.empty()) s += "      (" + printable(r.rec.last_error) + ")\n";
    return s;
}

}  // namespace

std::string ListFormatter::begin() const {
    if (!json_) return "";  // the text header comes with the first message
    return "{\"now\":" + std::to_string(now_) + ",\"quarantined_records\":" + std::to_string(quarantined_) +
           ",\"messages\":[";
}

std::string ListFormatter::add(const MessageView& v) {
    std::string s;
    if (json_) {
        s = (count_ ? ",\n" : "\n") + message_json(v, false);
    } else {
        if (count_ == 0) s = "-Queue ID-------- --Size-- ----Arrival Time---- -State---- -Sender/Recipient-------\n";
        char line[160];
        snprintf(line, sizeof line, "%s %8llu %-20s %-10s ", format_qid(v.msgid).c_str(),
                 (unsigned long long)v.msg.size, utc_text(v.msg.arrival).c_str(), message_state_name(v).c_str());
        s += line;
        s += (v.msg.sender.empty() ? std::string("<>") : printable(v.msg.sender)) + "\n";
        for (auto& r : v.rcpts) s += rcpt_lines(r, now_);
        s += "\n";
    }
    count_++;
    rcpts_ += v.rcpts.size();
    bytes_ += v.msg.size;
    return s;
}

std::string ListFormatter::end() const {
    if (json_) return "],\"count\":" + std::to_string(count_) + "}\n";
    if (count_ == 0) return "Mail queue is empty\n";
    return "-- " + std::to_string(bytes_ / 1024) + " Kbytes in " + std::to_string(count_) + " Request" +
           (count_ == 1 ? "" : "s") + ", " + std::to_string(rcpts_) + " Recipient" + (rcpts_ == 1 ? "" : "s") + ".\n";
}

std::string format_list_text(const std::vector<MessageView>& msgs, uint64_t now) {
    ListFormatter f(false, now, 0);
    std::string s = f.begin();
    for (auto& v : msgs) s += f.add(v);
    return s + f.end();
}

std::string format_list_json(const std::vector<MessageView>& msgs, uint64_t now, std::size_t quarantined) {
    ListFormatter f(true, now, quarantined);
    std::string s = f.begin();
    for (auto& v : msgs) s += f.add(v);
    return s + f.end();
}

std::string format_show_text(const MessageView& v, uint64_t now) {
    const MessageRecord& m = v.msg;
    std::string s = "Queue ID:   " + format_qid(v.msgid) + "\nState:      " + message_state_name(v) +
                    "\nSender:     <" + printable(m.sender) + ">\nArrival:    " + utc_text(m.arrival) +
                    "\nSize:       " + std::to_string(m.size) + "\n";
    if (!m.envid.empty()) s += "ENVID:      " + printable(m.envid) + "\n";
    if (m.ret) s += m.ret == 1 ? "RET:        FULL\n" : "RET:        HDRS\n";
    if (!m.client_addr.empty())
        s += "Client:     " + printable(m.client_helo) + " [" + printable(m.client_addr) + "]\n";
    if (!m.auth_user.empty()) s += "Auth user:  " + printable(m.auth_user) + "\n";
    if (m.submit_uid != kNoUid) s += "Submitted:  by uid " + std::to_string(m.submit_uid) + " (sendmail)\n";
    if (!m.hold_reason.empty()) s += "Held:       on arrival: " + printable(m.hold_reason) + "\n";
    s += "Recipients:\n";
    for (auto& r : v.rcpts) {
        s += rcpt_lines(r, now);
        std::string nb;
        if (!r.rec.orcpt.empty()) s += "      ORCPT " + printable(r.rec.orcpt) + "\n";
        if (r.rec.notify) s += "      NOTIFY " + std::string(notify_text(r.rec.notify, nb)) + "\n";
        if (r.rec.last_attempt) s += "      last attempt " + utc_text(r.rec.last_attempt) + "\n";
        if (r.rec.last_class) s += "      class " + std::string(bounce_class_name(BounceClass(r.rec.last_class))) + "\n";
    }
    s += "Headers:\n";
    std::size_t i = 0;
    while (i < v.headers.size()) {
        std::size_t j = v.headers.find('\n', i);
        if (j == std::string::npos) j = v.headers.size();
        std::string_view l(v.headers.data() + i, j - i);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        if (!l.empty()) s += "  " + printable(l) + "\n";
        i = j + 1;
    }
    return s;
}

std::string format_show_json(const MessageView& v, uint64_t now) {
    return "{\"now\":" + std::to_string(now) + ",\"message\":" + message_json(v, true) + "}\n";
}

std::string format_stats_text(const ClassCounts& c, std::size_t suppressed, uint64_t now) {
    std::string s = "Failed attempts by bounce class since " + utc_text(c.since) + " (" +
                    std::to_string(now >= c.since ? now - c.since : 0) + "s):\n";
    char line[96];
    snprintf(line, sizeof line, "  %-20s %10s %10s\n", "class", "deferred", "bounced");
    s += line;
    uint64_t td = 0, tb = 0;
    for (std::size_t i = 1; i < kBounceClasses; i++) {
        snprintf(line, sizeof line, "  %-20s %10llu %10llu\n", bounce_class_name(BounceClass(i)),
                 (unsigned long long)c.deferred[i], (unsigned long long)c.bounced[i]);
        s += line;
        td += c.deferred[i];
        tb += c.bounced[i];
    }
    snprintf(line, sizeof line, "  %-20s %10llu %10llu\n", "total", (unsigned long long)td, (unsigned long long)tb);
    s += line;
    return s + "Suppression list: " + std::to_string(suppressed) + " entr" + (suppressed == 1 ? "y" : "ies") + "\n";
}

std::string format_stats_json(const ClassCounts& c, std::size_t suppressed, uint64_t now) {
    std::string s = "{\"now\":" + std::to_string(now) + ",\"since\":" + std::to_string(c.since) + ",\"classes\":{";
    for (std::size_t i = 1; i < kBounceClasses; i++)
        s += std::string(i > 1 ? "," : "") + json_string(bounce_class_name(BounceClass(i))) +
             ":{\"deferred\":" + std::to_string(c.deferred[i]) + ",\"bounced\":" + std::to_string(c.bounced[i]) + "}";
    return s + "},\"suppressed\":" + std::to_string(suppressed) + "}\n";
}

namespace {

// Today's counts of an address ("" when it sent nothing today).
const std::map<std::string, uint64_t>* today_counts(const SourcePools& sp, const std::string& address, uint64_t now) {
    const SourcePools::State* st = sp.state(address);
    return st && st->day == now / 86400 && !st->counts.empty() ? &st->counts : nullptr;
}

}  // namespace

std::string format_warmup_text(const SourcePools& sp, uint64_t now) {
    if (sp.addresses().empty()) return "No source addresses (source_addresses is not set or empty)\n";
    std::string s = "Source addresses on " + utc_date_text(now / 86400) + " (UTC):\n";
    for (const SourceAddress& a : sp.addresses()) {
        const SourcePools::State* st = sp.state(a.address);
        uint64_t day = sp.day_number(a.address, now);
        s += "  " + a.address + "  pool " + join(a.pools) + "  helo " + (a.helo.empty() ? "(default)" : a.helo) + "\n";
        s += "      first used " + (st && st->first_day ? utc_date_text(st->first_day) : std::string("never")) + ", day " +
             std::to_string(day) + ", ";
        if (a.warmup.empty()) s += "no warm-up schedule";
        else if (day > a.warmup.size()) s += "warm (schedule of " + std::to_string(a.warmup.size()) + " days done)";
        else s += "warming up: " + std::to_string(a.warmup[day - 1]) + " per destination class today";
        s += "\n      sent today:";
        if (auto* c = today_counts(sp, a.address, now)) {
            for (auto& [cls, n] : *c) s += " " + printable(cls) + "=" + std::to_string(n);
        } else {
            s += " none";
        }
        s += "\n";
    }
    return s;
}

std::string format_warmup_json(const SourcePools& sp, uint64_t now) {
    std::string s = "{\"now\":" + std::to_string(now) + ",\"addresses\":[";
    bool first = true;
    for (const SourceAddress& a : sp.addresses()) {
        const SourcePools::State* st = sp.state(a.address);
        uint64_t day = sp.day_number(a.address, now);
        s += std::string(first ? "\n" : ",\n") + "{\"address\":" + json_string(a.address) + ",\"pools\":[";
        first = false;
        for (std::size_t i = 0; i < a.pools.size(); i++) s += (i ? "," : "") + json_string(a.pools[i]);
        s += "],\"helo\":" + (a.helo.empty() ? std::string("null") : json_string(a.helo)) + ",\"first_used\":" +
             (st && st->first_day ? "\"" + utc_date_text(st->first_day) + "\"" : std::string("null")) +
             ",\"day\":" + std::to_string(day) + ",\"schedule\":[";
        for (std::size_t i = 0; i < a.warmup.size(); i++) s += (i ? "," : "") + std::to_string(a.warmup[i]);
        bool limited = !a.warmup.empty() && day <= a.warmup.size();
        s += "],\"limit_today\":" + (limited ? std::to_string(a.warmup[day - 1]) : std::string("null")) +
             ",\"sent_today\":{";
        if (auto* c = today_counts(sp, a.address, now)) {
            bool f2 = true;
            for (auto& [cls, n] : *c) {
                s += std::string(f2 ? "" : ",") + json_string(cls) + ":" + std::to_string(n);
                f2 = false;
            }
        }
        s += "}}";
    }
    return s + "]}\n";
}

std::string format_suppression_text(const std::vector<SuppressionView>& list) {
    if (list.empty()) return "Suppression list is empty\n";
    std::string s;
    for (auto& v : list) {
        s += printable(v.address) + "  [" +
             (v.rec.bounce_class ? bounce_class_name(BounceClass(v.rec.bounce_class)) : "added by admin") +
             ", since " + utc_text(v.rec.since) + ", until " + utc_text(v.rec.until);
        if (v.rec.msgid) s += ", bounce of " + format_qid(v.rec.msgid);
        s += "]\n";
        if (!v.rec.reason.empty()) s += "      (" + printable(v.rec.reason) + ")\n";
    }
    return s + "-- " + std::to_string(list.size()) + " suppressed address" + (list.size() == 1 ? "" : "es") + ".\n";
}

std::string format_suppression_json(const std::vector<SuppressionView>& list, uint64_t now) {
    std::string s = "{\"now\":" + std::to_string(now) + ",\"count\":" + std::to_string(list.size()) + ",\"suppressed\":[";
    for (std::size_t i = 0; i < list.size(); i++) {
        const SuppressionRecord& r = list[i].rec;
        s += std::string(i ? ",\n" : "\n") + "{\"address\":" + json_string(list[i].address) + ",\"class\":" +
             (r.bounce_class ? json_string(bounce_class_name(BounceClass(r.bounce_class))) : std::string("null")) +
             ",\"since\":" + std::to_string(r.since) + ",\"until\":" + std::to_string(r.until) + ",\"queue_id\":" +
             (r.msgid ? "\"" + format_qid(r.msgid) + "\"" : std::string("null")) + ",\"reason\":" + json_string(r.reason) + "}";
    }
    return s + "]}\n";
}

}  // namespace mta::queue
