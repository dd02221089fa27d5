// Metrics collection: mtad asks every role for its samples, adds them up with its own and with the
// counters of processes that have exited, and renders the sum (common/metrics.h). The roles' samples
// are checked against the catalogue; a role that sends one it does not know is killed like any
// other that breaks the protocol.
#include <algorithm>
#include <event2/event.h>

#include "common/log.h"
#include "common/version.h"
#include "common/wire/wire.h"
#include "master/master.h"

namespace mta::master {

namespace {
constexpr unsigned kGatherSeconds = 2;  // a role slower than this is left out of one collection
constexpr std::size_t kMaxGathers = 16;  // collections at once (scrapes and mtactl stats together)
constexpr std::size_t kChunk = 128 * 1024;  // the rendered text goes to mta-metrics in pieces of this
}  // namespace

// With metrics_listen set, mtad collects on its own every kStatsRefreshSeconds as well, so that a
// process that dies between scrapes (or before the first) loses at most that much of its counts.
void Master::on_stats_refresh(int, short, void* arg) {
    auto* m = static_cast<Master*>(arg);
    if (!m->stopping_) m->start_gather(StatsFormat::none, 0);
}

namespace {
}  // namespace

void Master::start_gather(StatsFormat format, uint64_t client) {
    auto refuse = [&](const std::string& why) {
        if (format == StatsFormat::none) return;
        if (format == StatsFormat::prometheus) {
            if (Child* m = live_child(Role::metrics)) m->link->send(wire::encode(wire::AdminReply{"", false}, client));
        } else {
            control_->reply(client, "error: " + why + "\n", true);
        }
    };
    if (gathers_.size() >= kMaxGathers) {
        LOG_WARN("event=stats_refused reason=\"%zu collections running\"", gathers_.size());
        refuse("too many metrics collections at once");
        return;
    }
    auto g = std::make_unique<Gather>();
    g->owner = this;
    g->id = ++gather_seq_;
    g->format = format;
    g->client = client;
    g->retired = retired_stats_;
    for (auto& c : children_) {
        if (c->pid <= 0 || !c->ready || !c->link || !c->link->open()) continue;
        c->link->send(wire::encode(wire::StatsRequest{}, g->id));
        g->waiting.push_back(c.get());
    }
    g->timer.reset(evtimer_new(base_, &Master::on_gather_timer, g.get()));
    struct timeval tv = {kGatherSeconds, 0};
    evtimer_add(g->timer.get(), &tv);
    uint64_t id = g->id;
    bool done = g->waiting.empty();
    gathers_[id] = std::move(g);
    if (done) finish_gather(id);
}

void Master::on_gather_timer(int, short, void* arg) {
    auto* g = static_cast<Gather*>(arg);
    std::string late;
    for (auto* c : g->waiting) late += std::string(late.empty() ? "" : ",") + role_name(c->role) + "#" + std::to_string(c->instance);
    LOG_WARN("event=stats_incomplete missing=%s", late.c_str());
    g->owner->finish_gather(g->id);
}

bool Master::on_stats_message(Child& c, ipc::Message& m) {
    std::string err;
    if (m.type == ipc::Type::stats_request) {  // mta-metrics, for a scrape
        wire::StatsRequest req;
        if (!wire::decode(m, req, err)) return false;
        start_gather(StatsFormat::prometheus, m.reqid);
        return true;
    }
    wire::StatsReply reply;
    if (!wire::decode(m, reply, err)) {
        LOG_ERROR("event=stats_malformed role=%s reason=\"%s\"", role_name(c.role), log::safe(err).c_str());
        return false;
    }
    auto it = gathers_.find(m.reqid);
    if (it == gathers_.end()) return true;  // came after its collection gave up on it
    Gather& g = *it->second;
    auto w = std::find(g.waiting.begin(), g.waiting.end(), &c);
    if (w == g.waiting.end()) return false;  // a second answer, or one nobody asked for
    g.waiting.erase(w);
    if (!g.sum.add(reply.samples, err)) {
        LOG_ERROR("event=stats_malformed role=%s reason=\"%s\"", role_name(c.role), log::safe(err).c_str());
        return false;
    }
    // Keep what must survive the process: counters and histograms, not gauges.
    c.last_stats.clear();
    for (auto& s : reply.samples) {
        const metrics::Family* f = metrics::find_family(s.name);
        if (!f || f->kind != metrics::Kind::gauge) c.last_stats.push_back(std::move(s));
    }
    if (g.waiting.empty()) finish_gather(g.id);
    return true;
}

void Master::stats_child_gone(Child& c) {
    for (auto& s : c.last_stats) retired_stats_[{s.name, s.labels}] += s.value;
    std::vector<uint64_t> done;
    for (auto& [id, g] : gathers_) {
        auto w = std::find(g->waiting.begin(), g->waiting.end(), &c);
        if (w == g->waiting.end()) continue;
        // It was asked but died first: what it reported last stands in for it, as for a late one.
        std::string err;
        g->sum.add(c.last_stats, err);
        g->waiting.erase(w);
        if (g->waiting.empty()) done.push_back(id);
    }
    c.last_stats.clear();
    for (uint64_t id : done) finish_gather(id);
}

// mtad's own numbers: the build, the processes and their restarts, and what exited processes counted.
std::vector<metrics::Sample> Master::own_stats(const Gather& g) const {
    std::vector<metrics::Sample> out;
    out.push_back({"mta_build_info", metrics::labels({{"version", version()}}), 1});
    std::map<Role, std::pair<uint64_t, uint64_t>> by_role;  // running, restarts
    for (auto& c : children_) {
        auto& r = by_role[c->role];
        r.first += c->pid > 0 ? 1 : 0;
        r.second += c->restarts;
    }
    for (auto& [role, r] : by_role) {
        std::string l = metrics::labels({{"role", role_name(role)}});
        out.push_back({"mta_processes", l, r.first});
        out.push_back({"mta_process_restarts_total", l, r.second});
    }
    for (auto& [key, v] : g.retired) out.push_back({key.first, key.second, v});
    return out;
}

void Master::finish_gather(uint64_t id) {
    auto it = gathers_.find(id);
    if (it == gathers_.end()) return;
    std::unique_ptr<Gather> g = std::move(it->second);
    gathers_.erase(it);
    std::string err;
    // A role that did not answer in time counts with what it last reported, so that its counters do
    // not seem to drop (Prometheus would take that for a reset); its gauges are left out.
    for (const Child* c : g->waiting)
        if (!g->sum.add(c->last_stats, err)) LOG_ERROR("event=stats_own_malformed reason=\"%s\"", log::safe(err).c_str());
    if (!g->sum.add(own_stats(*g), err)) LOG_ERROR("event=stats_own_malformed reason=\"%s\"", log::safe(err).c_str());
    if (g->format == StatsFormat::none) return;
    if (g->format != StatsFormat::prometheus) {
        control_->reply(g->client, g->format == StatsFormat::json ? g->sum.json() : g->sum.text(), true);
        return;
    }
    Child* m = live_child(Role::metrics);
    if (!m) return;
    for (auto& chunk : wire::encode_admin_chunks(g->sum.prometheus(), g->client, kChunk)) m->link->send(std::move(chunk));
}

}  // namespace mta::master
