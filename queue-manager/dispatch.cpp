// Delivery dispatch: the in-memory active set, per-destination queues with a concurrency cap, jobs
// in flight per deliverer link, results from deliverers, and the schedule scan that refills it all.
// In-flight state is never written to the store: after a crash every unfinished recipient is due again.
#include <cerrno>
#include <cstring>
#include <event2/event.h>
#include <fcntl.h>
#include <functional>
#include <unistd.h>

#include "common/log.h"
#include "common/routing.h"
#include "queue-manager/dsn.h"
#include "queue-manager/qid.h"
#include "queue-manager/server.h"

namespace mta::queue {

bool QueueServer::is_active(uint64_t msgid, uint32_t index) const {
    if (dead_msgids_.count(msgid)) return true;
    auto it = active_.find(msgid);
    return it != active_.end() && it->second.rcpts.count(index);
}

void QueueServer::release_rcpt(uint64_t msgid, uint32_t index) {
    auto it = active_.find(msgid);
    if (it == active_.end()) return;
    if (it->second.rcpts.erase(index)) active_rcpts_--;
    if (it->second.rcpts.empty()) active_.erase(it);
    if (backlog_ && active_rcpts_ < kActiveLimit / 2) wake_at(clock_.now());
}

// Groups ready recipients by destination into jobs. Must not touch `am` after the first pump: a send
// failure can mark the message corrupt and drop it from the active set.
void QueueServer::activate(uint64_t msgid, ActiveMessage& am, const std::vector<uint32_t>& indices) {
    std::vector<std::string> touched;
    tables_.refresh();
    RouteTables tables = tables_.tables();
    bool settled = false;
    for (uint32_t idx : indices) {
        const RecipientRecord& r = am.rcpts.at(idx).rec;
        std::string domain = rcpt_domain(r.addr);
        Route rt = route(cfg_, domain, tables);
        LOG_DEBUG("event=route qid=%s rcpt=<%s> transport=\"%s\" role=%s nexthop=%s tls_level=%s",
                  format_qid(msgid).c_str(), log::safe(r.addr).c_str(), log::safe(rt.transport).c_str(),
                  rt.role.c_str(), log::safe(rt.nexthop).c_str(), rt.tls_level.empty() ? "default" : rt.tls_level.c_str());
        if (rt.role == "error" || rt.role == "retry") {
            // transport_map error:/retry:, or a table we need is unusable: settled here, no deliverer.
            RcptResult res{idx, rt.role == "error" ? ipc::DeliveryStatus::bounced : ipc::DeliveryStatus::deferred, rt.text};
            record_result(msgid, am, am.rcpts.at(idx), idx, res, "none");
            settled = true;
            continue;
        }
        bool local = rt.role == role_name(Role::local);
        std::string key = (local ? "L:" : "S:") + rt.nexthop + (rt.tls_level.empty() ? "" : " tls=" + rt.tls_level);
        auto [it, fresh] = dests_.try_emplace(key);
        Destination& d = it->second;
        if (fresh) {
            d.nexthop = rt.nexthop;
            d.tls_level = rt.tls_level;
            d.local = local;
        }
        // Append to this message's last job for the destination while it has room.
        std::size_t cost = deliver_cost(r);
        if (d.waiting.empty() || d.waiting.back().msgid != msgid || d.waiting.back().indices.size() >= kJobRecipients ||
            cost * (d.waiting.back().indices.size() + 1) > kJobBytes)
            d.waiting.push_back(WaitingJob{msgid, {}});
        d.waiting.back().indices.push_back(idx);
        if (touched.empty() || touched.back() != key) touched.push_back(key);
    }
    if (settled) arm_flush();
    for (auto& key : touched) pump(key);
}

QueueServer::Peer* QueueServer::pick_peer(const Destination& d) {
    if (d.local) {
        for (auto it = peer_ids_.lower_bound({Role::local, 0}); it != peer_ids_.end() && it->first.first == Role::local; ++it)
            if (Peer* p = find_peer(it->second); p && !p->closed) return p;
        return nullptr;
    }
    // A destination sticks to one smtp process (and its connection cache) while the set is stable.
    std::vector<Peer*> smtp;
    for (auto it = peer_ids_.lower_bound({Role::smtp, 0}); it != peer_ids_.end() && it->first.first == Role::smtp; ++it)
        if (Peer* p = find_peer(it->second); p && !p->closed) smtp.push_back(p);
    if (smtp.empty()) return nullptr;
    return smtp[std::hash<std::string>{}(d.nexthop) % smtp.size()];
}

void QueueServer::pump(const std::string& key) {
    auto it = dests_.find(key);
    if (it == dests_.end()) return;
    Destination& d = it->second;
    if (defer_if_dead(d, key)) return;
    std::size_t cap = dest_window(key, d);
    while (!stopping_ && !d.waiting.empty() && d.inflight < cap) {
        Peer* p = pick_peer(d);
        if (!p) return;  // no deliverer yet: pump_all() runs when one appears
        if (p->inflight >= kLinkInflight) {
            if (!d.blocked) {
                d.blocked = true;
                blocked_.push_back(key);
            }
            return;
        }
        WaitingJob wj = std::move(d.waiting.front());
        d.waiting.pop_front();
        send_job(d, key, *p, wj);
    }
    if (d.waiting.empty() && d.inflight == 0 && !d.blocked) {
        // An idle healthy destination forgets its slow-start window; failure counts and deadness stay.
        if (auto h = health_.find(key); h != health_.end() && h->second.dead_until == 0 && h->second.conn_failures == 0)
            health_.erase(h);
        dests_.erase(it);
    }
}

void QueueServer::pump_blocked() {
    for (std::size_t n = blocked_.size(); n > 0 && !blocked_.empty(); n--) {
        std::string key = std::move(blocked_.front());
        blocked_.pop_front();
        auto it = dests_.find(key);
        if (it == dests_.end()) continue;
        it->second.blocked = false;
        pump(key);
    }
}

void QueueServer::pump_all() {
    std::vector<std::string> keys;
    keys.reserve(dests_.size());
    for (auto& [key, d] : dests_) keys.push_back(key);
    for (auto& key : keys) pump(key);
}

bool QueueServer::send_job(Destination& d, const std::string& key, Peer& p, WaitingJob& wj) {
    auto am_it = active_.find(wj.msgid);
    if (am_it == active_.end() || am_it->second.corrupt) return false;
    ActiveMessage& am = am_it->second;
    std::vector<std::pair<uint32_t, const RecipientRecord*>> list;
    for (uint32_t idx : wj.indices) {
        auto r = am.rcpts.find(idx);
        if (r != am.rcpts.end() && r->second.stage == RcptStage::ready) list.emplace_back(idx, &r->second.rec);
    }
    if (list.empty()) return false;
    std::string qid = format_qid(wj.msgid);
    // O_NONBLOCK: a FIFO planted in body/ must not stall the queue; the check below refuses it.
    int fd = openat(body_dir_fd_.get(), qid.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        corrupt_message(wj.msgid, (std::string("body: ") + strerror(errno)).c_str());
        return false;
    }
    if (std::string why = body_fd_problem(fd, am.msg.size); !why.empty()) {
        ::close(fd);
        corrupt_message(wj.msgid, why.c_str());
        return false;
    }
    ipc::Message m = make_deliver(wj.msgid, am.msg, d.nexthop, list, d.tls_level);
    m.add_fd(UniqueFd(fd));
    uint64_t job_id = next_job_id_++;
    Job& job = jobs_[job_id];
    job.msgid = wj.msgid;
    job.dest = key;
    job.peer = p.id;
    job.remaining = list.size();
    for (auto& [idx, rec] : list) {
        p.rcpt_jobs[{wj.msgid, idx}] = job_id;
        am.rcpts[idx].stage = RcptStage::inflight;
    }
    d.inflight++;
    p.inflight++;
    LOG_DEBUG("event=dispatch qid=%s nexthop=%s tls_level=%s nrcpt=%zu peer=%s", qid.c_str(),
              log::safe(d.nexthop).c_str(), d.tls_level.empty() ? "default" : d.tls_level.c_str(), list.size(),
              p.link->desc().c_str());
    p.link->send(std::move(m));  // a send error only marks the peer closed; drop_peer() requeues later
    return true;
}

void QueueServer::finish_job(uint64_t job_id) {
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return;
    std::string key = it->second.dest;
    note_job_outcome(it->second);
    if (Peer* p = find_peer(it->second.peer); p && p->inflight) p->inflight--;
    jobs_.erase(it);
    if (auto d = dests_.find(key); d != dests_.end() && d->second.inflight) d->second.inflight--;
    pump(key);
    pump_blocked();
}

void QueueServer::on_deliver_result(Peer& p, ipc::Message& m) {
    DeliverResult res;
    std::string err;
    if (!parse_deliver_result(m, res, err)) malformed(p.link->desc(), "deliver_result: " + err);
    std::string relay = role_name(p.role);
    std::vector<uint64_t> done;
    for (auto& r : res.results) {
        auto j = p.rcpt_jobs.find({res.msgid, r.index});
        if (j == p.rcpt_jobs.end()) malformed(p.link->desc(), "result for a recipient not in flight on this link");
        uint64_t job_id = j->second;
        p.rcpt_jobs.erase(j);
        auto am = active_.find(res.msgid);
        ActiveRcpt* ar = nullptr;
        if (am != active_.end())
            if (auto f = am->second.rcpts.find(r.index); f != am->second.rcpts.end()) ar = &f->second;
        if (ar && !am->second.corrupt) {
            if (auto job = jobs_.find(job_id); job != jobs_.end()) {
                auto d = dests_.find(job->second.dest);
                if (d != dests_.end()) relay = std::string(role_name(p.role)) + ":" + d->second.nexthop;
            }
            record_result(res.msgid, am->second, *ar, r.index, r, relay);
        } else {
            release_rcpt(res.msgid, r.index);
        }
        auto job = jobs_.find(job_id);
        if (job != jobs_.end()) {
            job->second.answered = true;
            if (r.status == ipc::DeliveryStatus::delivered) job->second.delivered = true;
            else if (r.text.rfind("4.4.1", 0) == 0) {
                job->second.conn_failed = true;
                job->second.conn_error = r.text;
            }
            if (--job->second.remaining == 0) done.push_back(job_id);
        }
    }
    arm_flush();
    for (uint64_t id : done) finish_job(id);
}

// mtaqueue hold arrived while this recipient was in flight: its deferral leaves it held.
void QueueServer::hold_if_asked(const std::string& qid, const ActiveRcpt& ar, RecipientRecord& rec) {
    if (!ar.hold_after) return;
    rec.state = RcptState::held;
    LOG_INFO("event=held qid=%s to=<%s> reason=\"held by admin during the attempt\"", qid.c_str(),
             log::safe(ar.rec.addr).c_str());
}

void QueueServer::record_result(uint64_t msgid, ActiveMessage& am, ActiveRcpt& ar, uint32_t index,
                                const RcptResult& r, const std::string& relay) {
    std::string qid = format_qid(msgid);
    std::string to = log::safe(ar.rec.addr), text = log::safe(r.text);
    ar.stage = RcptStage::result_pending;
    Op op;
    op.msgid = msgid;
    op.index = index;
    op.had_schedule = ar.rec.scheduled();
    op.old_next = ar.rec.next_attempt;
    uint64_t now = clock_.now();
    op.rcpt = ar.rec;
    Outcome want = r.status == ipc::DeliveryStatus::delivered  ? Outcome::delivered
                   : r.status == ipc::DeliveryStatus::bounced ? Outcome::bounced
                                                               : Outcome::deferred;
    Outcome got = apply_attempt(op.rcpt, am.msg, want, r.text, policy_, now, clock_.jitter());
    if (got == Outcome::deferred && !ar.delete_after) {
        LOG_INFO("event=deferred qid=%s to=<%s> relay=%s reason=\"%s\" next=%llus", qid.c_str(), to.c_str(),
                 log::safe(relay).c_str(), text.c_str(), (unsigned long long)(op.rcpt.next_attempt - now));
        hold_if_asked(qid, ar, op.rcpt);
        op.kind = Op::Kind::put_recipient;
        if (delay_warning_due(am.msg, op.rcpt, now)) {
            op.rcpt.flags |= kRcptDelayWarned;
            op.dsn = Op::Dsn::delay;
            op.msg = am.msg;
        }
        result_ops_.push_back(std::move(op));
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
        LOG_INFO("event=bounced qid=%s rcpt=<%s> relay=%s reason=\"%s\"", qid.c_str(), to.c_str(),
                 log::safe(relay).c_str(), log::safe(op.rcpt.last_error).c_str());
        if (notify_allows(op.rcpt.notify, DsnKind::failure)) op.dsn = Op::Dsn::failure;
    }
    if (op.dsn != Op::Dsn::none) op.msg = am.msg;
    op.kind = Op::Kind::delete_recipient;
    result_ops_.push_back(std::move(op));
    if (am.records_left) am.records_left--;
    if (am.records_left == 0) {
        Op del;
        del.kind = Op::Kind::delete_message;
        del.msgid = msgid;
        result_ops_.push_back(std::move(del));
    }
}

// One delay DSN per recipient, once it has waited delay_warning_time, if its NOTIFY allows it.
bool QueueServer::delay_warning_due(const MessageRecord& m, const RecipientRecord& r, uint64_t now) const {
    return cfg_.delay_warning_time > 0 && !m.sender.empty() && !(r.flags & kRcptDelayWarned) &&
           now >= m.arrival + cfg_.delay_warning_time && notify_allows(r.notify, DsnKind::delay);
}

// A deliverer went away: what it had in flight is retried soon. The failure was ours, so the
// attempt does not count against the recipient.
void QueueServer::requeue_peer_jobs(Peer& p) {
    uint64_t now = clock_.now();
    std::vector<uint64_t> done;
    for (auto& [key, job_id] : p.rcpt_jobs) {
        auto am = active_.find(key.first);
        auto f = am == active_.end() ? decltype(am->second.rcpts.end()){} : am->second.rcpts.find(key.second);
        if (am != active_.end() && !am->second.corrupt && f != am->second.rcpts.end()) {
            ActiveRcpt& ar = f->second;
            ar.stage = RcptStage::result_pending;
            Op op;
            op.kind = Op::Kind::put_recipient;
            op.msgid = key.first;
            op.index = key.second;
            op.had_schedule = ar.rec.scheduled();
            op.old_next = ar.rec.next_attempt;
            op.rcpt = ar.rec;
            op.rcpt.state = RcptState::deferred;
            op.rcpt.next_attempt = now + kLinkLossRetry;
            op.rcpt.last_error = "delivery agent went away";
            result_ops_.push_back(std::move(op));
            LOG_WARN("event=deferred qid=%s to=<%s> reason=\"delivery agent went away\" next=%llus",
                     format_qid(key.first).c_str(), log::safe(ar.rec.addr).c_str(), (unsigned long long)kLinkLossRetry);
            hold_if_asked(format_qid(key.first), ar, result_ops_.back().rcpt);
        } else {
            release_rcpt(key.first, key.second);
        }
        auto job = jobs_.find(job_id);
        if (job != jobs_.end() && --job->second.remaining == 0) done.push_back(job_id);
    }
    p.rcpt_jobs.clear();
    if (!result_ops_.empty()) arm_flush();
    for (uint64_t id : done) finish_job(id);
}

void QueueServer::corrupt_message(uint64_t msgid, const char* why) {
    LOG_ERROR("event=corrupt qid=%s reason=\"%s\"", format_qid(msgid).c_str(), log::safe(why).c_str());
    dead_msgids_[msgid] = true;
    if (auto it = active_.find(msgid); it != active_.end()) {
        it->second.corrupt = true;
        std::vector<uint32_t> ready;
        for (auto& [idx, ar] : it->second.rcpts)
            if (ar.stage == RcptStage::ready) ready.push_back(idx);
        for (uint32_t idx : ready) release_rcpt(msgid, idx);
    }
    Op op;
    op.kind = Op::Kind::mark_corrupt;
    op.msgid = msgid;
    result_ops_.push_back(std::move(op));
    arm_flush();
}

void QueueServer::wake_at(uint64_t t) {
    if (wake_at_ != 0 && wake_at_ <= t) return;
    wake_at_ = t;
    uint64_t now = clock_.now();
    struct timeval tv = {time_t(t > now ? t - now : 0), 0};
    evtimer_add(timer_ev_.get(), &tv);
}

void QueueServer::on_timer() {
    wake_at_ = 0;
    scan_store();
}

void QueueServer::scan_store() {
    if (stopping_) return;
    if (active_rcpts_ >= kActiveLimit) {
        backlog_ = true;
        return;
    }
    uint64_t now = clock_.now();
    ScanResult r = store_.scan_due(now, kActiveLimit - active_rcpts_,
                                   [this](uint64_t id, uint32_t idx) { return is_active(id, idx); });
    backlog_ = r.more;
    std::vector<uint64_t> bad;
    store_.load_messages(r.msgids, [&](uint64_t msgid, Store::Load l, MessageRecord& m, RcptList& rcpts) {
        if (l != Store::Load::ok) {
            bad.push_back(msgid);
            return;
        }
        auto [it, fresh] = active_.try_emplace(msgid);
        ActiveMessage& am = it->second;
        if (fresh) {
            am.msg = std::move(m);
            am.records_left = uint32_t(rcpts.size());
        }
        std::vector<uint32_t> indices;
        for (auto& [idx, rec] : rcpts) {
            if (!rec.scheduled() || rec.next_attempt > now || am.rcpts.count(idx)) continue;
            am.rcpts.emplace(idx, ActiveRcpt{std::move(rec), RcptStage::ready});
            indices.push_back(idx);
        }
        active_rcpts_ += indices.size();
        if (am.rcpts.empty()) active_.erase(it);
        else if (!indices.empty()) activate(msgid, am, indices);
    });
    for (uint64_t msgid : bad) corrupt_message(msgid, "record missing or undecodable");
    if (r.more && active_rcpts_ < kActiveLimit) wake_at(now);
    else if (!r.more && r.next_time) wake_at(r.next_time);
}

}  // namespace mta::queue
