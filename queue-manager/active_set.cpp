// The active set: admission (new commits, the schedule scan), the recipients' stages while they are
// delivered, and the store change each attempt's result becomes.
#include "queue-manager/active_set.h"

#include <event2/event.h>

#include "common/address.h"
#include "common/log.h"
#include "common/metrics.h"
#include "queue-manager/bounce_class.h"
#include "queue-manager/dsn.h"
#include "queue-manager/qid.h"

namespace mta::queue {

ActiveSet::ActiveSet(event_base* base, Store& store, Clock clock, Hooks hooks)
    : store_(store), clock_(std::move(clock)), hooks_(std::move(hooks)) {
    counts_.since = clock_.now();
    timer_ev_.reset(evtimer_new(base, [](evutil_socket_t, short, void* a) {
        auto* self = static_cast<ActiveSet*>(a);
        self->wake_at_ = 0;
        self->scan();
    }, this));
}

void ActiveSet::configure(const Config& cfg) {
    policy_ = RetryPolicy::from(cfg);
    delay_warning_time_ = cfg.delay_warning_time;
    suppress_ = cfg.suppress_hard_bounces;
    suppression_ttl_ = cfg.suppression_ttl;
}

void ActiveSet::wake_at(uint64_t t) {
    if (wake_at_ != 0 && wake_at_ <= t) return;
    wake_at_ = t;
    uint64_t now = clock_.now();
    struct timeval tv = {time_t(t > now ? t - now : 0), 0};
    evtimer_add(timer_ev_.get(), &tv);
}

bool ActiveSet::admit(uint64_t msgid, MessageRecord msg, std::vector<RecipientRecord> rcpts) {
    if (stopping_ || rcpts_ + rcpts.size() > kLimit) {
        backlog_ = true;
        return false;
    }
    Message& m = active_[msgid];
    m.msg = std::move(msg);
    m.records_left = uint32_t(rcpts.size());
    std::vector<uint32_t> indices;
    indices.reserve(rcpts.size());
    for (std::size_t i = 0; i < rcpts.size(); i++) {
        m.rcpts.emplace(uint32_t(i), Rcpt{std::move(rcpts[i]), Stage::ready});
        indices.push_back(uint32_t(i));
    }
    rcpts_ += indices.size();
    hooks_.ready(msgid, indices);
    return true;
}

bool ActiveSet::skip(uint64_t msgid, uint32_t index) const {
    return dead_msgids_.count(msgid) || holds(msgid, index);
}

void ActiveSet::scan() {
    if (stopping_) return;
    if (rcpts_ >= kScanLimit) {
        backlog_ = true;
        return;
    }
    uint64_t now = clock_.now();
    ScanResult r = store_.scan_due(now, kScanLimit - rcpts_, [this](uint64_t id, uint32_t idx) { return skip(id, idx); });
    backlog_ = r.more;
    std::vector<uint64_t> bad;
    store_.load_messages(r.msgids, [&](uint64_t msgid, Store::Load l, MessageRecord& msg, RcptList& rcpts) {
        if (l != Store::Load::ok) {
            bad.push_back(msgid);
            return;
        }
        auto [it, fresh] = active_.try_emplace(msgid);
        Message& m = it->second;
        if (fresh) {
            m.msg = std::move(msg);
            m.records_left = uint32_t(rcpts.size());
        }
        std::vector<uint32_t> indices;
        for (auto& [idx, rec] : rcpts) {
            if (!rec.scheduled() || rec.next_attempt > now || m.rcpts.count(idx)) continue;
            m.rcpts.emplace(idx, Rcpt{std::move(rec), Stage::ready});
            indices.push_back(idx);
        }
        rcpts_ += indices.size();
        if (m.rcpts.empty()) active_.erase(it);
        else if (!indices.empty()) hooks_.ready(msgid, indices);
    });
    for (uint64_t msgid : bad) corrupt(msgid, "record missing or undecodable");
    if (r.more && rcpts_ < kScanLimit) wake_at(now);
    else if (!r.more && r.next_time) wake_at(r.next_time);
}

const RecipientRecord& ActiveSet::recipient(uint64_t msgid, uint32_t index) const {
    return active_.at(msgid).rcpts.at(index).rec;
}

const MessageRecord& ActiveSet::message(uint64_t msgid) const { return active_.at(msgid).msg; }

ActiveSet::Sendable ActiveSet::sendable(uint64_t msgid, const std::vector<uint32_t>& indices) const {
    Sendable s;
    auto it = active_.find(msgid);
    if (it == active_.end() || it->second.corrupt) return s;
    for (uint32_t idx : indices) {
        auto r = it->second.rcpts.find(idx);
        if (r != it->second.rcpts.end() && r->second.stage == Stage::ready) s.rcpts.emplace_back(idx, &r->second.rec);
    }
    if (!s.rcpts.empty()) s.msg = &it->second.msg;
    return s;
}

void ActiveSet::sent(uint64_t msgid, const std::vector<uint32_t>& indices) {
    Message& m = active_.at(msgid);
    for (uint32_t idx : indices) m.rcpts.at(idx).stage = Stage::inflight;
}

void ActiveSet::settle(uint64_t msgid, uint32_t index, const RcptResult& res, const std::string& relay) {
    auto it = active_.find(msgid);
    if (it != active_.end() && !it->second.corrupt)
        if (auto r = it->second.rcpts.find(index); r != it->second.rcpts.end())
            return record_result(msgid, it->second, r->second, index, res, relay);
    release(msgid, index);
}

std::size_t ActiveSet::defer_ready(uint64_t msgid, const std::vector<uint32_t>& indices, const std::string& text,
                                   const std::string& relay) {
    auto it = active_.find(msgid);
    if (it == active_.end() || it->second.corrupt) return 0;
    std::size_t n = 0;
    for (uint32_t idx : indices) {
        auto r = it->second.rcpts.find(idx);
        if (r == it->second.rcpts.end() || r->second.stage != Stage::ready) continue;
        record_result(msgid, it->second, r->second, idx, RcptResult{idx, ipc::DeliveryStatus::deferred, text, 0}, relay);
        n++;
    }
    return n;
}

// mtaqueue hold arrived while this recipient was in flight: its deferral leaves it held.
void ActiveSet::hold_if_asked(const std::string& qid, const Rcpt& r, RecipientRecord& rec) const {
    if (!r.hold_after) return;
    rec.state = RcptState::held;
    rec.held_by = r.hold_by;
    rec.held_at = clock_.now();
    LOG_INFO("event=held qid=%s to=<%s> reason=\"held by admin during the attempt\"", qid.c_str(),
             log::safe(r.rec.addr).c_str());
}

void ActiveSet::record_result(uint64_t msgid, Message& m, Rcpt& ar, uint32_t index, const RcptResult& r,
                              const std::string& relay) {
    std::string qid = format_qid(msgid);
    std::string to = log::safe(ar.rec.addr), text = log::safe(r.text);
    Op op = recipient_change(msgid, index, ar);
    uint64_t now = clock_.now();
    Outcome want = r.status == ipc::DeliveryStatus::delivered  ? Outcome::delivered
                   : r.status == ipc::DeliveryStatus::bounced ? Outcome::bounced
                                                               : Outcome::deferred;
    Outcome got = apply_attempt(op.rcpt, m.msg, want, r.text, policy_, now, clock_.jitter());
    auto cls = BounceClass(op.rcpt.last_class);
    count_outcome(got, ar.delete_after, relay, now - std::min(now, m.msg.arrival));
    if (got == Outcome::deferred && !ar.delete_after) {
        counts_.deferred[op.rcpt.last_class]++;
        LOG_INFO("event=deferred qid=%s to=<%s> relay=%s class=%s reason=\"%s\" next=%llus", qid.c_str(),
                 to.c_str(), log::safe(relay).c_str(), bounce_class_name(cls), text.c_str(),
                 (unsigned long long)(op.rcpt.next_attempt - now));
        hold_if_asked(qid, ar, op.rcpt);  // op is recipient_change()'s put_recipient
        if (delay_warning_due(m.msg, op.rcpt, now)) {
            op.rcpt.flags |= kRcptDelayWarned;
            op.dsn = Op::Dsn::delay;
            op.msg = m.msg;
        }
        hooks_.change(std::move(op));
        return;
    }
    // Delivered, bounced, or deleted by the admin during a deferred attempt: the recipient record goes
    // (a bounce leaves as a DSN in the same transaction; an admin delete sends none).
    if (got == Outcome::deferred) {
        LOG_INFO("event=deleted qid=%s to=<%s> relay=%s reason=\"deleted by admin during the attempt: %s\"",
                 qid.c_str(), to.c_str(), log::safe(relay).c_str(), text.c_str());
    } else if (got == Outcome::delivered) {
        LOG_INFO("event=delivered qid=%s to=<%s> relay=%s detail=\"%s\"", qid.c_str(), to.c_str(),
                 log::safe(relay).c_str(), text.c_str());
        // RFC 3461 §5.2.1: a next hop with DSN got NOTIFY=SUCCESS and reports; one without it: "relayed".
        if (notify_allows(op.rcpt.notify, DsnKind::success) && r.handoff != 2) op.dsn = Op::Dsn::success;
        if (r.handoff == 1) op.rcpt.flags |= kRcptRelayed;
    } else {
        LOG_INFO("event=bounced qid=%s rcpt=<%s> relay=%s class=%s reason=\"%s\"", qid.c_str(), to.c_str(),
                 log::safe(relay).c_str(), bounce_class_name(cls), log::safe(op.rcpt.last_error).c_str());
        counts_.bounced[op.rcpt.last_class]++;
        if (suppress_ && hard_bounce(cls) && relay != kSuppressionRelay) suppress(msgid, op.rcpt, now);
        if (notify_allows(op.rcpt.notify, DsnKind::failure)) op.dsn = Op::Dsn::failure;
    }
    if (op.dsn != Op::Dsn::none) op.msg = m.msg;
    op.kind = Op::Kind::delete_recipient;
    hooks_.change(std::move(op));
    if (m.records_left) m.records_left--;
    if (m.records_left == 0) {
        Op del;
        del.kind = Op::Kind::delete_message;
        del.msgid = msgid;
        hooks_.change(std::move(del));
    }
}

// mta_deliveries_total and mta_delivery_delay_seconds. The transport is the relay's first word (smtp,
// lmtp, local); the queue's own verdicts (dead destination, suppression, no route) count as "none".
void ActiveSet::count_outcome(Outcome got, bool deleted, const std::string& relay, uint64_t waited) {
    if (got == Outcome::deferred && deleted) return;  // the admin's delete, not a delivery outcome
    std::string_view t(relay);
    t = t.substr(0, t.find(':'));
    if (t != "smtp" && t != "lmtp" && t != "local") t = "none";
    const char* result = got == Outcome::delivered ? "delivered" : got == Outcome::bounced ? "bounced" : "deferred";
    auto& reg = metrics::registry();
    reg.add("mta_deliveries_total", metrics::labels({{"transport", t}, {"result", result}}));
    if (got == Outcome::delivered) reg.observe("mta_delivery_delay_seconds", "", double(waited));
}

// A hard bounce puts the address on the suppression list, in the same transaction as the bounce.
void ActiveSet::suppress(uint64_t msgid, const RecipientRecord& rec, uint64_t now) {
    Op op;
    op.kind = Op::Kind::put_suppression;
    op.msgid = msgid;
    op.address = addr::lower(rec.addr);
    op.sup = SuppressionRecord{rec.last_class, now, now + suppression_ttl_, msgid, rec.last_error};
    LOG_INFO("event=suppression_added qid=%s rcpt=<%s> class=%s until=%llu", format_qid(msgid).c_str(),
             log::safe(rec.addr).c_str(), bounce_class_name(BounceClass(rec.last_class)),
             (unsigned long long)op.sup.until);
    hooks_.change(std::move(op));
}

// One delay DSN per recipient, once it has waited delay_warning_time, if its NOTIFY allows it.
bool ActiveSet::delay_warning_due(const MessageRecord& m, const RecipientRecord& r, uint64_t now) const {
    return delay_warning_time_ > 0 && !m.sender.empty() && !(r.flags & kRcptDelayWarned) &&
           now >= m.arrival + delay_warning_time_ && notify_allows(r.notify, DsnKind::delay);
}

// The store change that rewrites a recipient held here (put_recipient of its record as it is, replacing
// its schedule entry); it waits for the commit from now on.
Op ActiveSet::recipient_change(uint64_t msgid, uint32_t index, Rcpt& ar) {
    ar.stage = Stage::result_pending;
    Op op;
    op.kind = Op::Kind::put_recipient;
    op.msgid = msgid;
    op.index = index;
    op.had_schedule = ar.rec.scheduled();
    op.old_next = ar.rec.next_attempt;
    op.rcpt = ar.rec;
    return op;
}

// The failure was ours, so the attempt does not count against the recipient: it is due again soon.
void ActiveSet::agent_lost(uint64_t msgid, uint32_t index) {
    auto it = active_.find(msgid);
    if (it == active_.end() || it->second.corrupt || !it->second.rcpts.count(index)) return release(msgid, index);
    Rcpt& ar = it->second.rcpts.at(index);
    Op op = recipient_change(msgid, index, ar);
    op.rcpt.state = RcptState::deferred;
    op.rcpt.next_attempt = clock_.now() + kLinkLossRetry;
    op.rcpt.last_error = "delivery agent went away";
    op.rcpt.last_class = uint8_t(BounceClass::other_transient);
    counts_.deferred[op.rcpt.last_class]++;
    LOG_WARN("event=deferred qid=%s to=<%s> class=other_transient reason=\"delivery agent went away\" next=%llus",
             format_qid(msgid).c_str(), log::safe(ar.rec.addr).c_str(), (unsigned long long)kLinkLossRetry);
    hold_if_asked(format_qid(msgid), ar, op.rcpt);
    hooks_.change(std::move(op));
}

void ActiveSet::postpone(uint64_t msgid, const std::vector<uint32_t>& indices, uint64_t until, const std::string& text) {
    auto it = active_.find(msgid);
    if (it == active_.end() || it->second.corrupt) return;
    for (uint32_t idx : indices) {
        auto r = it->second.rcpts.find(idx);
        if (r == it->second.rcpts.end() || r->second.stage != Stage::ready) continue;
        Op op = recipient_change(msgid, idx, r->second);
        if (!op.rcpt.scheduled()) op.rcpt.state = RcptState::queued;
        op.rcpt.next_attempt = until;
        op.rcpt.last_error = clip_error(text);
        hooks_.change(std::move(op));
    }
}

void ActiveSet::corrupt(uint64_t msgid, const std::string& why) {
    LOG_ERROR("event=corrupt qid=%s reason=\"%s\"", format_qid(msgid).c_str(), log::safe(why).c_str());
    dead_msgids_.insert(msgid);
    if (auto it = active_.find(msgid); it != active_.end()) {
        it->second.corrupt = true;
        std::vector<uint32_t> ready;
        for (auto& [idx, ar] : it->second.rcpts)
            if (ar.stage == Stage::ready) ready.push_back(idx);
        for (uint32_t idx : ready) release(msgid, idx);
    }
    Op op;
    op.kind = Op::Kind::mark_corrupt;
    op.msgid = msgid;
    hooks_.change(std::move(op));
}

void ActiveSet::release(uint64_t msgid, uint32_t index) {
    auto it = active_.find(msgid);
    if (it == active_.end()) return;
    if (it->second.rcpts.erase(index)) rcpts_--;
    if (it->second.rcpts.empty()) active_.erase(it);
    if (backlog_ && rcpts_ < kLimit / 2) wake_at(clock_.now());
}

bool ActiveSet::holds(uint64_t msgid, uint32_t index) const {
    auto it = active_.find(msgid);
    return it != active_.end() && it->second.rcpts.count(index);
}

bool ActiveSet::busy(uint64_t msgid, uint32_t index) const {
    auto it = active_.find(msgid);
    if (it == active_.end()) return false;
    auto r = it->second.rcpts.find(index);
    return r != it->second.rcpts.end() && r->second.stage != Stage::ready;
}

// hold/release/delete of a recipient in flight: the attempt runs on; if it defers, the recipient is held
// (hold), deferred as usual (release of an earlier hold) or deleted without a DSN (delete). A delivery
// or bounce ends the recipient either way.
bool ActiveSet::mark_inflight(uint64_t msgid, uint32_t index, const std::string& verb, uint64_t uid) {
    if (verb != "hold" && verb != "release" && verb != "delete") return false;
    auto am = active_.find(msgid);
    if (am == active_.end()) return false;
    auto f = am->second.rcpts.find(index);
    if (f == am->second.rcpts.end() || f->second.stage != Stage::inflight) return false;
    if (verb == "delete") {
        if (f->second.delete_after) return false;
        f->second.delete_after = true;
        return true;
    }
    bool want = verb == "hold";
    if (f->second.hold_after == want) return false;
    f->second.hold_after = want;
    f->second.hold_by = uid;
    return true;
}

void ActiveSet::records_deleted(uint64_t msgid, uint32_t n) {
    if (auto it = active_.find(msgid); it != active_.end())
        it->second.records_left = it->second.records_left > n ? it->second.records_left - n : 0;
}

}  // namespace mta::queue
