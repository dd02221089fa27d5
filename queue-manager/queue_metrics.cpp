// The queue's gauges for mta-metrics and mtactl stats (common/metrics.h): queue size by recipient state,
// the oldest message's age, and per destination the deliveries in flight and the recipients waiting for
// a retry. Counters (received, deliveries, batch sizes) are counted where they happen.
#include <event2/event.h>

#include "common/log.h"
#include "common/metrics.h"
#include "queue-manager/server.h"

namespace mta::queue {

void QueueServer::collect_metrics(metrics::Registry& r) {
    uint64_t now = clock_.now();
    std::size_t messages = store_.count("messages");
    r.set("mta_queue_messages", "", messages);
    if (messages == 0 && census_.finished) {  // an empty queue needs no census to say so
        census_.done_deferred.clear();
        census_.done_held = 0;
    }
    uint64_t oldest = store_.oldest_arrival();
    r.set("mta_queue_oldest_message_age_seconds", "", oldest && oldest < now ? now - oldest : 0);
    r.set("mta_queue_recipients", metrics::labels({{"state", "active"}}), active_ ? active_->size() : 0);
    std::size_t top = cfg_.metrics_top_destinations;
    if (sched_) {
        std::map<std::string, uint64_t> inflight;
        sched_->for_each_destination([&](const std::string& name, std::size_t n) {
            if (n) inflight[name.empty() ? "local" : name] += n;
        });
        r.set_top("mta_destination_in_flight", "destination", inflight, top);
    }
    // What the last complete census saw; a new one starts when that is old (and none runs).
    if (census_.finished) {
        r.set("mta_queue_recipients", metrics::labels({{"state", "deferred"}}), [&] {
            uint64_t n = 0;
            for (auto& [d, c] : census_.done_deferred) n += c;
            return n;
        }());
        r.set("mta_queue_recipients", metrics::labels({{"state", "held"}}), census_.done_held);
        r.set_top("mta_destination_deferred_recipients", "destination", census_.done_deferred, top);
    }
    if (!census_.running && (census_.finished == 0 || now >= census_.finished + kCensusSeconds)) {
        census_.running = true;
        census_.started = now;
        census_.next_msgid = 0;
        census_.next_index = 0;
        census_.held = 0;
        census_.deferred.clear();
        census_.dest_of_domain.clear();
        if (!census_ev_) census_ev_.reset(event_new(base_, -1, 0, &QueueServer::on_census, this));
        event_active(census_ev_.get(), 0, 0);
    }
}

void QueueServer::on_census(int, short, void* arg) { static_cast<QueueServer*>(arg)->census_step(); }

// One slice of the census: kCensusSlice recipient records, then back to the loop (deliveries and commits
// go on between slices; a record may be seen in an older or newer state, which a gauge can live with).
void QueueServer::census_step() {
    uint64_t now = clock_.now();
    RouteTables tables = route_tables();
    bool more = store_.walk_recipients_from(
        census_.next_msgid, census_.next_index, kCensusSlice, [&](uint64_t msgid, uint32_t index, const RecipientRecord& rec) {
            if (rec.state == RcptState::held) {
                census_.held++;
                return;
            }
            if (rec.state == RcptState::bounced || rec.next_attempt <= now || active_->holds(msgid, index)) return;
            std::string domain = rcpt_domain(rec.addr);
            auto it = census_.dest_of_domain.find(domain);
            if (it == census_.dest_of_domain.end()) {
                std::string name = destination_name(domain, tables);
                if (census_.dest_of_domain.size() < 100000) it = census_.dest_of_domain.emplace(domain, name).first;
                census_.deferred[name]++;
                return;
            }
            census_.deferred[it->second]++;
        });
    if (more) {
        event_active(census_ev_.get(), 0, 0);
        return;
    }
    census_.running = false;
    census_.finished = std::max<uint64_t>(now, 1);
    census_.done_deferred = std::move(census_.deferred);
    census_.done_held = census_.held;
    census_.deferred.clear();
    census_.dest_of_domain.clear();
}

}  // namespace mta::queue
