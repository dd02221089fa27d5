// Destination scheduling. Health of a remote destination: slow start (it starts at kSlowStartWindow
// concurrent jobs, gains one per job that delivered, halves on a connection failure) and the
// dead-destination back-off (kDeadAfter jobs in a row that could not connect mark it dead for
// minimal_backoff_time; its waiting recipients are deferred without an attempt, so a down domain holds no
// delivery slots). Local delivery (mta-local) is not throttled beyond delivery_concurrency.
#include "queue-manager/scheduler.h"

#include <algorithm>

#include "common/log.h"
#include "queue-manager/qid.h"

namespace mta::queue {

Scheduler::Scheduler(std::function<uint64_t()> now, Hooks hooks) : now_(std::move(now)), hooks_(std::move(hooks)) {}

void Scheduler::configure(std::size_t concurrency, uint64_t dead_backoff) {
    concurrency_ = concurrency ? concurrency : 1;
    dead_backoff_ = dead_backoff;
}

void Scheduler::link_up(uint64_t link, bool local, uint64_t instance) {
    links_[link] = Link{local, instance, 0, {}};
    (local ? local_links_ : smtp_links_)[instance] = link;
    pump_all();
}

void Scheduler::link_retired(uint64_t link) {
    auto it = links_.find(link);
    if (it == links_.end()) return;
    auto& active = it->second.local ? local_links_ : smtp_links_;
    if (auto a = active.find(it->second.instance); a != active.end() && a->second == link) active.erase(a);
}

// What the link had in flight goes back to the caller recipient by recipient; its jobs end with it.
void Scheduler::link_down(uint64_t link, const std::function<void(uint64_t msgid, uint32_t index)>& lost) {
    link_retired(link);
    auto it = links_.find(link);
    if (it == links_.end()) return;
    std::vector<uint64_t> done;
    for (auto& [rcpt, job_id] : it->second.rcpt_jobs) {
        lost(rcpt.first, rcpt.second);
        auto job = jobs_.find(job_id);
        if (job != jobs_.end() && --job->second.remaining == 0) done.push_back(job_id);
    }
    links_.erase(it);
    for (uint64_t id : done) finish(id);
}

std::size_t Scheduler::rcpts_in_flight(uint64_t link) const {
    auto it = links_.find(link);
    return it == links_.end() ? 0 : it->second.rcpt_jobs.size();
}

std::string Scheduler::key_of(const Nexthop& to) {
    return (to.local ? "L:" : "S:") + to.name() + (to.tls_level.empty() ? "" : " tls=" + to.tls_level);
}

void Scheduler::for_each_destination(const std::function<void(const std::string&, std::size_t)>& fn) const {
    for (auto& [key, d] : dests_) fn(d.to.local ? std::string() : d.to.name(), d.inflight);
}

DestinationView Scheduler::describe(const Nexthop& to) const {
    DestinationView v;
    if (to.local) return v;
    std::string key = key_of(to);
    v.name = to.name();
    auto d = dests_.find(key);
    auto h = health_.find(key);
    v.known = d != dests_.end() || h != health_.end();
    if (d != dests_.end()) {
        v.inflight = d->second.inflight;
        for (auto& wj : d->second.waiting) v.waiting += wj.indices.size();
    }
    v.window = window(key);
    if (h != health_.end()) {
        v.dead_until = h->second.dead_until;
        v.dead_error = h->second.last_error;
    }
    v.rate_per_minute = shaper_.per_minute(key);
    v.throttled = shaper_.throttled(key);
    return v;
}

std::string Scheduler::add(const Nexthop& to, uint64_t msgid, uint32_t index, std::size_t cost) {
    std::string key = key_of(to);
    auto [it, fresh] = dests_.try_emplace(key);
    Destination& d = it->second;
    if (fresh) d.to = to;
    if (!to.local) shaper_.set_policy(key, to.policy);
    // Append to this message's last job for the destination while it has room.
    if (d.waiting.empty() || d.waiting.back().msgid != msgid || d.waiting.back().indices.size() >= kJobRecipients ||
        cost * (d.waiting.back().indices.size() + 1) > kJobBytes || d.waiting.back().pools != to.pools ||
        (d.waiting.back().host != to.host && to.group.rfind("mx:", 0) == 0))  // a provider's domains: one each
        d.waiting.push_back(WaitingJob{msgid, {}, to.host, to.pools});
    d.waiting.back().indices.push_back(index);
    return key;
}

// A destination sticks to one smtp process (and its connection cache) while the set is stable.
uint64_t Scheduler::pick_link(const Destination& d) const {
    const auto& active = d.to.local ? local_links_ : smtp_links_;
    if (active.empty()) return 0;
    auto it = active.begin();
    if (!d.to.local) std::advance(it, std::hash<std::string>{}(d.to.name()) % active.size());
    return it->second;
}

void Scheduler::pump(const std::string& key) {
    auto it = dests_.find(key);
    if (it == dests_.end()) return;
    Destination& d = it->second;
    if (defer_if_dead(d, key)) return;
    std::size_t cap = window(key);
    uint64_t now = now_();
    if (!d.to.local) {
        Shaper::Event e = shaper_.recover(key, now);
        if (e.kind == Shaper::Event::step)
            LOG_INFO("event=destination_recovering nexthop=%s rate=%u/minute", log::safe(d.to.name()).c_str(), e.rate);
        else if (e.kind == Shaper::Event::restored)
            LOG_INFO("event=destination_restored nexthop=%s rate=%s", log::safe(d.to.name()).c_str(),
                     e.rate ? (std::to_string(e.rate) + "/minute").c_str() : "unlimited");
    }
    while (!stopping_ && !d.waiting.empty() && d.inflight < cap) {
        std::string why;
        if (uint64_t t = d.to.local ? 0 : shaper_.next_free(key, now, why)) {
            postpone_waiting(d, key, t, why);
            break;
        }
        uint64_t link_id = pick_link(d);
        if (!link_id) return;  // no deliverer yet: pump_all() runs when one appears
        Link& link = links_.at(link_id);
        if (link.inflight >= kLinkInflight) {
            if (!d.blocked) {
                d.blocked = true;
                blocked_.push_back(key);
            }
            return;
        }
        WaitingJob wj = std::move(d.waiting.front());
        d.waiting.pop_front();
        const SourceAddress* source = nullptr;
        std::string cls;
        if (!d.to.local && !wj.pools.empty()) {
            cls = shaper_.policy(key).destination_class();
            SourcePools::Choice c = sources_.pick(wj.pools, cls, now);
            if (!c.source) {
                hold_for_source(d, wj, c);
                continue;
            }
            source = c.source;
        }
        if (!send_job(d, key, link_id, link, wj, source)) continue;
        if (source) sources_.sent(source->address, cls, now);
        if (!d.to.local) shaper_.sent(key, now);
    }
    if (d.waiting.empty() && d.inflight == 0 && !d.blocked) {
        // An idle healthy destination forgets its slow-start window; failure counts and deadness stay.
        if (auto h = health_.find(key); h != health_.end() && h->second.dead_until == 0 && h->second.conn_failures == 0)
            health_.erase(h);
        if (shaper_.idle(key, now)) shaper_.forget(key);
        dests_.erase(it);
    }
}

bool Scheduler::send_job(Destination& d, const std::string& key, uint64_t link_id, Link& link, WaitingJob& wj,
                         const SourceAddress* source) {
    Nexthop to = d.to;
    to.host = wj.host;
    to.pools = wj.pools;
    if (source) {
        to.source = source->address;
        to.source_helo = source->helo;
    }
    std::vector<uint32_t> sent = hooks_.send(link_id, wj.msgid, wj.indices, to);
    if (sent.empty()) return false;
    uint64_t job_id = next_job_id_++;
    Job& job = jobs_[job_id];
    job.dest = key;
    job.link = link_id;
    job.remaining = sent.size();
    for (uint32_t idx : sent) link.rcpt_jobs[{wj.msgid, idx}] = job_id;
    d.inflight++;
    link.inflight++;
    return true;
}

void Scheduler::hold_for_source(Destination& d, WaitingJob& wj, const SourcePools::Choice& c) {
    if (!c.wait_until) {  // a pool without addresses: the admin's to fix (deferred, as for a bad table)
        LOG_ERROR("event=source_pool_empty nexthop=%s reason=\"%s\"", log::safe(d.to.name()).c_str(), log::safe(c.why).c_str());
        hooks_.defer(wj.msgid, wj.indices, "4.3.5 " + c.why, "none:" + d.to.name());
        return;
    }
    LOG_INFO("event=source_warmup_wait qid=%s nexthop=%s nrcpt=%zu until=%llu reason=\"%s\"", format_qid(wj.msgid).c_str(),
             log::safe(d.to.name()).c_str(), wj.indices.size(), (unsigned long long)c.wait_until, log::safe(c.why).c_str());
    hooks_.postpone(wj.msgid, wj.indices, c.wait_until, "4.7.0 " + c.why);
}

void Scheduler::pump_blocked() {
    for (std::size_t n = blocked_.size(); n > 0 && !blocked_.empty(); n--) {
        std::string key = std::move(blocked_.front());
        blocked_.pop_front();
        auto it = dests_.find(key);
        if (it == dests_.end()) continue;
        it->second.blocked = false;
        pump(key);
    }
}

void Scheduler::pump_all() {
    std::vector<std::string> keys;
    keys.reserve(dests_.size());
    for (auto& [key, d] : dests_) keys.push_back(key);
    for (auto& key : keys) pump(key);
}

void Scheduler::forget(const std::set<std::pair<uint64_t, uint32_t>>& rcpts) {
    if (rcpts.empty()) return;
    for (auto& [key, d] : dests_) {
        for (auto it = d.waiting.begin(); it != d.waiting.end();) {
            auto& idx = it->indices;
            std::erase_if(idx, [&](uint32_t i) { return rcpts.count({it->msgid, i}) != 0; });
            it = idx.empty() ? d.waiting.erase(it) : it + 1;
        }
    }
}

std::optional<Scheduler::Answered> Scheduler::answered(uint64_t link_id, uint64_t msgid, uint32_t index,
                                                       ipc::DeliveryStatus status, const std::string& text) {
    auto link = links_.find(link_id);
    if (link == links_.end()) return std::nullopt;
    auto r = link->second.rcpt_jobs.find({msgid, index});
    if (r == link->second.rcpt_jobs.end()) return std::nullopt;
    Answered a;
    a.job = r->second;
    link->second.rcpt_jobs.erase(r);
    auto job = jobs_.find(a.job);
    if (job == jobs_.end()) return a;
    Job& j = job->second;
    if (auto d = dests_.find(j.dest); d != dests_.end()) a.nexthop = d->second.to.name();
    j.answered = true;
    if (status != ipc::DeliveryStatus::delivered && shaper_.is_slowdown(text))
        note_slowdown(j.dest, text);
    if (status == ipc::DeliveryStatus::delivered) j.delivered = true;
    else if (text.rfind("4.4.1", 0) == 0) {
        j.conn_failed = true;
        j.conn_error = text;
    }
    a.last = --j.remaining == 0;
    return a;
}

void Scheduler::finish(uint64_t job_id) {
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return;
    std::string key = it->second.dest;
    note_outcome(it->second);
    if (auto link = links_.find(it->second.link); link != links_.end() && link->second.inflight)
        link->second.inflight--;
    jobs_.erase(it);
    if (auto d = dests_.find(key); d != dests_.end() && d->second.inflight) d->second.inflight--;
    pump(key);
    pump_blocked();
}

std::size_t Scheduler::window(const std::string& key) const {
    auto d = dests_.find(key);
    if (d != dests_.end() && d->second.to.local) return concurrency_;
    auto h = health_.find(key);
    std::size_t w = std::min(concurrency_, h == health_.end() ? kSlowStartWindow : h->second.window);
    if (uint32_t max = shaper_.policy(key).max_connections) w = std::min<std::size_t>(w, max);
    return std::max<std::size_t>(1, w);
}

// The destination may send nothing more before `first`: its waiting recipients go back to the store,
// spread one job per `spacing` seconds from then on, so that they come back about when their turn is
// instead of all at once (and a large backlog never holds the active set's room).
void Scheduler::postpone_waiting(Destination& d, const std::string& key, uint64_t first, const std::string& why) {
    uint64_t step = shaper_.spacing(key), until = first;
    std::string text = "4.7.0 destination " + d.to.name() + " is shaped: " + why;
    std::size_t n = 0;
    while (!d.waiting.empty()) {
        WaitingJob wj = std::move(d.waiting.front());
        d.waiting.pop_front();
        n += wj.indices.size();
        hooks_.postpone(wj.msgid, wj.indices, until, text);
        until += step;
    }
    LOG_INFO("event=destination_shaped nexthop=%s postponed=%zu from=+%llus reason=\"%s\"", log::safe(d.to.name()).c_str(),
             n, (unsigned long long)(first - std::min(first, now_())), log::safe(why).c_str());
}

void Scheduler::note_slowdown(const std::string& key, const std::string& text) {
    auto d = dests_.find(key);
    if (d == dests_.end() || d->second.to.local) return;
    Shaper::Event e = shaper_.slowdown(key, now_());
    if (e.kind == Shaper::Event::cut)
        LOG_WARN("event=destination_throttled nexthop=%s rate=%u/minute reason=\"%s\"",
                 log::safe(d->second.to.name()).c_str(), e.rate, log::safe(text).c_str());
}

bool Scheduler::dead(const std::string& key) const {
    auto h = health_.find(key);
    return h != health_.end() && h->second.dead_until > now_();
}

void Scheduler::note_outcome(const Job& job) {
    auto d = dests_.find(job.dest);
    if (!job.answered || d == dests_.end() || d->second.to.local) return;
    Health& h = health_[job.dest];
    if (job.delivered) {
        h.window = std::min(concurrency_, h.window + 1);
        h.conn_failures = 0;
        h.dead_until = 0;
        return;
    }
    if (!job.conn_failed) {  // the server answered: it is alive, whatever it said
        h.conn_failures = 0;
        return;
    }
    h.window = std::max<std::size_t>(1, h.window / 2);
    h.last_error = job.conn_error;
    if (++h.conn_failures >= kDeadAfter) {
        h.dead_until = now_() + dead_backoff_;
        LOG_WARN("event=destination_dead nexthop=%s failures=%u until=+%llus reason=\"%s\"",
                 log::safe(d->second.to.name()).c_str(), h.conn_failures, (unsigned long long)dead_backoff_,
                 log::safe(h.last_error).c_str());
    }
}

// While a destination is dead, its waiting recipients are deferred at once (an attempt is counted, so
// lifetime, delay warnings and bounces still apply). True when the destination was handled here.
bool Scheduler::defer_if_dead(Destination& d, const std::string& key) {
    if (d.to.local) return false;
    auto h = health_.find(key);
    if (h == health_.end() || h->second.dead_until == 0) return false;
    if (now_() >= h->second.dead_until) {
        // Probe: allow one job through; another connection failure makes it dead again at once.
        h->second.dead_until = 0;
        h->second.window = 1;
        h->second.conn_failures = kDeadAfter - 1;
        return false;
    }
    std::string text = "4.4.1 destination " + d.to.name() + " is not reachable (" + h->second.last_error + ")";
    std::string relay = "dead:" + d.to.name();
    std::size_t n = 0;
    while (!d.waiting.empty()) {
        WaitingJob wj = std::move(d.waiting.front());
        d.waiting.pop_front();
        n += hooks_.defer(wj.msgid, wj.indices, text, relay);
    }
    if (n) LOG_INFO("event=destination_skipped nexthop=%s deferred=%zu", log::safe(d.to.name()).c_str(), n);
    hooks_.wake_at(h->second.dead_until);
    return true;
}

void Scheduler::revive() {
    for (auto& [key, h] : health_) {
        h.dead_until = 0;
        h.conn_failures = 0;
    }
}

}  // namespace mta::queue
