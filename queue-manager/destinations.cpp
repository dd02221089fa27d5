// Per-destination health: slow start (a remote destination starts at kSlowStartWindow concurrent
// jobs, gains one per job that delivered, halves on a connection failure) and the dead-destination
// back-off (kDeadAfter jobs in a row that could not connect mark it dead for minimal_backoff_time; its
// waiting recipients are deferred without an attempt, so a down domain holds no delivery slots).
// Local delivery (mta-local) is not throttled beyond delivery_concurrency.
#include "common/log.h"
#include "queue-manager/server.h"

namespace mta::queue {

std::size_t QueueServer::dest_window(const std::string& key, const Destination& d) {
    std::size_t cap = cfg_.delivery_concurrency ? cfg_.delivery_concurrency : 1;
    if (d.local) return cap;
    auto& h = health_[key];
    return std::max<std::size_t>(1, std::min(cap, h.window));
}

void QueueServer::note_job_outcome(const Job& job) {
    auto d = dests_.find(job.dest);
    if (!job.answered || d == dests_.end() || d->second.local) return;
    std::size_t cap = cfg_.delivery_concurrency ? cfg_.delivery_concurrency : 1;
    DestHealth& h = health_[job.dest];
    if (job.delivered) {
        h.window = std::min(cap, h.window + 1);
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
        uint64_t now = clock_.now();
        h.dead_until = now + policy_.minimal_backoff;
        LOG_WARN("event=destination_dead nexthop=%s failures=%u until=+%llus reason=\"%s\"",
                 log::safe(d->second.nexthop).c_str(), h.conn_failures, (unsigned long long)policy_.minimal_backoff,
                 log::safe(h.last_error).c_str());
    }
}

// While a destination is dead, its waiting recipients are deferred at once (an attempt is counted, so
// lifetime, delay warnings and bounces still apply). True when the destination was handled here.
bool QueueServer::defer_if_dead(Destination& d, const std::string& key) {
    if (d.local) return false;
    auto h = health_.find(key);
    if (h == health_.end() || h->second.dead_until == 0) return false;
    uint64_t now = clock_.now();
    if (now >= h->second.dead_until) {
        // Probe: allow one job through; another connection failure makes it dead again at once.
        h->second.dead_until = 0;
        h->second.window = 1;
        h->second.conn_failures = kDeadAfter - 1;
        return false;
    }
    std::string text = "4.4.1 destination " + d.nexthop + " is not reachable (" + h->second.last_error + ")";
    std::size_t n = 0;
    while (!d.waiting.empty()) {
        WaitingJob wj = std::move(d.waiting.front());
        d.waiting.pop_front();
        auto am = active_.find(wj.msgid);
        if (am == active_.end() || am->second.corrupt) continue;
        for (uint32_t idx : wj.indices) {
            auto r = am->second.rcpts.find(idx);
            if (r == am->second.rcpts.end() || r->second.stage != RcptStage::ready) continue;
            record_result(wj.msgid, am->second, r->second, idx, RcptResult{idx, ipc::DeliveryStatus::deferred, text, 0},
                          "dead:" + d.nexthop);
            n++;
        }
    }
    if (n) {
        LOG_INFO("event=destination_skipped nexthop=%s deferred=%zu", log::safe(d.nexthop).c_str(), n);
        arm_flush();
    }
    wake_at(h->second.dead_until);
    return true;
}

void QueueServer::revive_destinations() {
    for (auto& [key, h] : health_) {
        h.dead_until = 0;
        h.conn_failures = 0;
    }
}

}  // namespace mta::queue
