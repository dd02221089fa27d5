// The rules of mtaqueue why (see why.h), checked in the order that decides: what the recipient is
// doing now, then what the queue decided for it, then what its destination allows.
#include "queue-manager/why.h"

#include "queue-manager/bounce_class.h"
#include "queue-manager/qid.h"

namespace mta::queue {
namespace {

bool starts_with(const std::string& s, std::string_view p) { return s.compare(0, p.size(), p) == 0; }

std::string seconds_text(uint64_t s) {
    if (s % 3600 == 0 && s >= 3600) return std::to_string(s / 3600) + "h";
    if (s % 60 == 0 && s >= 60) return std::to_string(s / 60) + "m";
    return std::to_string(s) + "s";
}

std::string uid_text(uint64_t uid) { return uid == kNoUid ? "an unknown user" : "uid " + std::to_string(uid); }

// "the last attempt at T: TEXT" when there was one.
std::string last_attempt(const RecipientRecord& r) {
    if (!r.last_attempt) return "";
    std::string s = "last attempt ";
    s.append(std::to_string(r.attempts)).append(" at ").append(utc_text(r.last_attempt));
    if (!r.last_error.empty()) s.append(": ").append(r.last_error);
    return s;
}

}  // namespace

RcptWhy explain(const MessageView& v, const RcptView& r, const WhyContext& c) {
    RcptWhy w;
    const RecipientRecord& rec = r.rec;
    if (v.msg.state == MessageState::corrupt) {
        w.rule = "corrupt";
        w.detail = "the message is corrupt (its body or records are damaged) and is never delivered; "
                   "mtaqueue list --corrupt shows it, mtaqueue delete removes it";
        return w;
    }
    if (r.inflight) {
        w.rule = "in-flight";
        w.detail = "being delivered right now";
        return w;
    }
    if (rec.state == RcptState::bounced) {
        w.rule = "bounced";
        w.detail = "bounced";
        if (rec.last_attempt) w.detail += " at " + utc_text(rec.last_attempt);
        if (!rec.last_error.empty()) w.detail += ": " + rec.last_error;
        w.detail += " (kept until its DSN is queued)";
        return w;
    }
    if (rec.state == RcptState::held) {
        if (rec.held_at) {
            w.rule = "held";
            w.detail = "held by an admin (" + uid_text(rec.held_by) + ", " + utc_text(rec.held_at) +
                       "); mtaqueue release " + format_qid(v.msgid) + " lets it go";
        } else if (!v.msg.hold_reason.empty()) {
            w.rule = "held-on-arrival";
            w.detail = "queued held on arrival: " + v.msg.hold_reason + "; mtaqueue release " + format_qid(v.msgid) +
                       " lets it go";
        } else {
            w.rule = "held";
            w.detail = "held by an admin; mtaqueue release " + format_qid(v.msgid) + " lets it go";
        }
        return w;
    }
    w.destination = c.destination ? c.destination(rec.addr) : DestinationView{};
    const DestinationView& d = w.destination;
    const std::string last = last_attempt(rec);
    if (rec.next_attempt > c.now) {
        w.until = rec.next_attempt;
        const std::string at = "next attempt at " + utc_text(rec.next_attempt);
        if (starts_with(rec.last_error, "4.7.0 destination ") && rec.last_error.find(" is shaped: ") != std::string::npos) {
            w.rule = "shaped";
            w.detail = "postponed by traffic shaping (" + rec.last_error.substr(6) + "); " + at;
        } else if (starts_with(rec.last_error, "4.7.0 warm-up allowance")) {
            w.rule = "warm-up";
            w.detail = "waiting for a source address's warm-up allowance (" + rec.last_error.substr(6) + "); " + at;
        } else if (d.dead_until > c.now) {
            w.rule = "destination-dead";
            w.detail = "destination " + d.name + " is marked dead until " + utc_text(d.dead_until) +
                       " after connection failures in a row (" + d.dead_error + "); " + at;
        } else if (rec.last_class == uint8_t(BounceClass::tls_auth_required) || starts_with(rec.last_error, "4.7.5") ||
                   starts_with(rec.last_error, "4.7.4")) {
            w.rule = "tls-policy";
            w.detail = "the TLS policy could not be met: " + rec.last_error + "; " + at;
        } else {
            w.rule = "backoff";
            w.detail = "back-off step " + std::to_string(rec.attempts) + " (minimal_backoff_time " +
                       seconds_text(c.policy.minimal_backoff) + ", doubling up to maximal_backoff_time " +
                       seconds_text(c.policy.maximal_backoff) + ")";
            if (!last.empty()) w.detail += " after the " + last;
            w.detail += "; " + at;
        }
        return w;
    }
    // Due now.
    if (d.dead_until > c.now) {
        w.rule = "destination-dead";
        w.until = d.dead_until;
        w.detail = "due, but destination " + d.name + " is marked dead until " + utc_text(d.dead_until) + " (" +
                   d.dead_error + ")";
    } else if (d.known && d.inflight >= d.window && d.window > 0) {
        w.rule = "concurrency-limit";
        w.detail = "due; destination " + d.name + " has " + std::to_string(d.inflight) + " deliveries running, as " +
                   "many as it may have now (" + std::to_string(d.window) + ": slow start, delivery_concurrency, " +
                   "max_connections), and " + std::to_string(d.waiting) + " recipients waiting";
    } else {
        w.rule = "due";
        w.detail = "due now: the queue manager takes it at its next look at the schedule";
    }
    if (!last.empty()) w.detail += "; " + last;
    return w;
}

std::string format_why_text(const MessageView& v, const std::vector<RcptWhy>& why, const WhyContext& c) {
    std::string s = format_qid(v.msgid) + "  from <" + printable(v.msg.sender) + ">  arrived " + utc_text(v.msg.arrival) +
                    ", expires " + utc_text(v.msg.arrival + lifetime(v.msg, c.policy)) + "\n";
    for (std::size_t i = 0; i < why.size() && i < v.rcpts.size(); i++) {
        const RcptView& r = v.rcpts[i];
        s += "  <" + printable(r.rec.addr) + ">  " + rcpt_state_name(r) + "  [" + why[i].rule + "]\n";
        s += "      " + printable(why[i].detail) + "\n";
    }
    return s;
}

std::string format_why_json(const MessageView& v, const std::vector<RcptWhy>& why, const WhyContext& c) {
    std::string s = "{\"id\":\"" + format_qid(v.msgid) + "\",\"now\":" + std::to_string(c.now) + ",\"sender\":" +
                    json_string(v.msg.sender) + ",\"arrival\":" + std::to_string(v.msg.arrival) +
                    ",\"expires\":" + std::to_string(v.msg.arrival + lifetime(v.msg, c.policy)) + ",\"recipients\":[";
    for (std::size_t i = 0; i < why.size() && i < v.rcpts.size(); i++) {
        const RcptView& r = v.rcpts[i];
        const DestinationView& d = why[i].destination;
        s += std::string(i ? "," : "") + "\n{\"address\":" + json_string(r.rec.addr) + ",\"state\":\"" +
             rcpt_state_name(r) + "\",\"rule\":\"" + why[i].rule + "\",\"detail\":" + json_string(why[i].detail) +
             ",\"until\":" + (why[i].until ? std::to_string(why[i].until) : std::string("null")) +
             ",\"attempts\":" + std::to_string(r.rec.attempts) + ",\"last_attempt\":" +
             (r.rec.last_attempt ? std::to_string(r.rec.last_attempt) : std::string("null")) +
             ",\"last_reply\":" + json_string(r.rec.last_error) + ",\"next_attempt\":" +
             (r.rec.scheduled() ? std::to_string(r.rec.next_attempt) : std::string("null")) + ",\"held_by\":" +
             (r.rec.held_at ? std::to_string(r.rec.held_by) : std::string("null")) + ",\"held_at\":" +
             (r.rec.held_at ? std::to_string(r.rec.held_at) : std::string("null")) + ",\"destination\":";
        if (d.name.empty()) {
            s += "null";
        } else {
            s += "{\"name\":" + json_string(d.name) + ",\"in_flight\":" + std::to_string(d.inflight) + ",\"window\":" +
                 std::to_string(d.window) + ",\"waiting\":" + std::to_string(d.waiting) + ",\"dead_until\":" +
                 (d.dead_until ? std::to_string(d.dead_until) : std::string("null")) + ",\"rate_per_minute\":" +
                 (d.rate_per_minute ? std::to_string(d.rate_per_minute) : std::string("null")) + ",\"throttled\":" +
                 (d.throttled ? "true" : "false") + "}";
        }
        s += "}";
    }
    return s + "]}\n";
}

}  // namespace mta::queue
