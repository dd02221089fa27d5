// Delivery dispatch: the server's side of the hand-offs between the active set, the scheduler and the
// deliverer links. Ready recipients are routed to destinations; a job the scheduler lets go becomes a
// deliver message with a read-only body fd; a deliverer's results go back to both parts.
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "common/address.h"
#include "common/log.h"
#include "common/routing.h"
#include "queue-manager/admin.h"
#include "queue-manager/bounce_class.h"
#include "queue-manager/qid.h"
#include "queue-manager/server.h"

namespace mta::queue {
namespace {

// The scheduler's destination of a routed recipient: its next hop, TLS level, group and policy, and the
// source pools (the sender's, else the destination's).
Nexthop nexthop_of(const Route& rt, const std::vector<std::string>& sender_pools) {
    bool local = rt.role == role_name(Role::local);
    Nexthop to{local, rt.nexthop, rt.tls_level, rt.group, rt.policy, {}, {}, {}};
    if (!local && rt.nexthop.rfind("lmtp:", 0) != 0) to.pools = sender_pools.empty() ? rt.policy.pools : sender_pools;
    return to;
}

}  // namespace

// The routing tables as published now, with the MX hosts learned from deliveries.
RouteTables QueueServer::route_tables() {
    tables_.refresh();
    RouteTables tables = tables_.tables();
    tables.known_mx = [this](std::string_view domain) { return known_mx(std::string(domain)); };
    return tables;
}

// Must not look at the active set's records after the first pump: a send failure can mark the message
// corrupt and drop it from the active set.
void QueueServer::route(uint64_t msgid, const std::vector<uint32_t>& indices) {
    std::vector<std::string> touched;
    RouteTables tables = route_tables();
    refresh_sources();
    std::vector<std::string> sender_pools;
    std::string pools_problem = sender_pools_of(active_->message(msgid).sender, tables, sender_pools);
    for (uint32_t idx : indices) {
        const RecipientRecord& r = active_->recipient(msgid, idx);
        std::string domain = rcpt_domain(r.addr);
        Route rt = mta::route(cfg_, domain, tables);
        LOG_DEBUG("event=route qid=%s rcpt=<%s> transport=\"%s\" role=%s nexthop=%s tls_level=%s",
                  format_qid(msgid).c_str(), log::safe(r.addr).c_str(), log::safe(rt.transport).c_str(),
                  rt.role.c_str(), log::safe(rt.nexthop).c_str(), rt.tls_level.empty() ? "default" : rt.tls_level.c_str());
        if (cfg_.suppress_hard_bounces) {
            if (std::string why = suppressed(r.addr); !why.empty()) {
                active_->settle(msgid, idx, RcptResult{idx, ipc::DeliveryStatus::bounced, why}, kSuppressionRelay);
                continue;
            }
        }
        if (rt.role == "smtp" && !pools_problem.empty()) rt = retry_route(pools_problem, rt.transport);
        if (rt.role == "error" || rt.role == "retry") {
            // transport_map error:/retry:, or a table we need is unusable: settled here, no deliverer.
            RcptResult res{idx, rt.role == "error" ? ipc::DeliveryStatus::bounced : ipc::DeliveryStatus::deferred, rt.text};
            active_->settle(msgid, idx, res, "none");
            continue;
        }
        Nexthop to = nexthop_of(rt, sender_pools);
        std::string key = sched_->add(to, msgid, idx, deliver_cost(r));
        if (touched.empty() || touched.back() != key) touched.push_back(key);
    }
    for (auto& key : touched) sched_->pump(key);
}

DestinationView QueueServer::destination_of(const std::string& rcpt, const MessageRecord& m) {
    RouteTables tables = route_tables();
    Route rt = mta::route(cfg_, rcpt_domain(rcpt), tables);
    if (rt.role != "smtp" && rt.role != role_name(Role::local)) return DestinationView{};  // settled by the queue
    std::vector<std::string> pools;
    sender_pools_of(m.sender, tables, pools);
    return sched_->describe(nexthop_of(rt, pools));
}

std::string QueueServer::destination_name(const std::string& domain, const RouteTables& tables) {
    Route rt = mta::route(cfg_, domain, tables);
    if (rt.role != "smtp" && rt.role != role_name(Role::local)) return rt.role;  // settled by the queue ("error")
    std::string name = sched_->describe(nexthop_of(rt, {})).name;
    return name.empty() ? "local" : name;
}

// destination_policy "mx:" keys: the MX host each domain's deliveries found, for kMxMemory seconds.
std::string QueueServer::known_mx(const std::string& domain) {
    auto it = known_mx_.find(domain);
    if (it == known_mx_.end()) return "";
    if (it->second.second > clock_.now()) return it->second.first;
    known_mx_.erase(it);
    return "";
}

void QueueServer::learn_mx(const std::string& domain, const std::string& mx) {
    if (domain.empty()) return;
    if (known_mx_.size() >= kMxMemoryMax && !known_mx_.count(domain)) known_mx_.clear();  // crude, bounded
    known_mx_[domain] = {addr::lower(mx), clock_.now() + kMxMemory};
}

// sender_source_pools: the pools of the sender's domain ("*" for the null sender), into `out`. Returns a
// deferral text when the table is unusable or its entry is bad, "" otherwise.
std::string QueueServer::sender_pools_of(const std::string& sender, const RouteTables& tables,
                                         std::vector<std::string>& out) {
    out.clear();
    if (!tables.sender_pools_error.empty()) return "4.3.0 sender_source_pools unavailable: " + tables.sender_pools_error;
    auto hit = lookup_domain(tables.sender_pools, sender.empty() ? "" : rcpt_domain(sender));
    std::string err;
    if (hit && !parse_pool_list(hit->second, out, err)) return "4.3.5 bad sender_source_pools entry for " + hit->first + ": " + err;
    return "";
}

// When source_addresses was (re)opened, SourcePools gets the addresses in it. A bad entry is skipped
// (mtamap refuses to build one, so only a damaged copy has them) and logged.
void QueueServer::refresh_sources() {
    if (tables_.sources_generation() == sources_generation_) return;
    sources_generation_ = tables_.sources_generation();
    std::vector<SourceAddress> list;
    table::Entries entries;
    std::string err;
    if (const table::Table* t = tables_.sources(); t && !t->entries(entries, 10000, err))
        LOG_ERROR("event=table_unavailable table=source_addresses reason=\"%s\"", log::safe(err).c_str());
    for (auto& [k, v] : entries) {
        SourceAddress a;
        if (parse_source_address(k, v, a, err)) list.push_back(std::move(a));
        else LOG_ERROR("event=table_entry_skipped table=source_addresses key=%s reason=\"%s\"", log::safe(k).c_str(),
                       log::safe(err).c_str());
    }
    LOG_INFO("event=source_addresses_loaded addresses=%zu", list.size());
    sched_->sources().configure(std::move(list));
}

// The bounce text for a recipient on the suppression list (entry not expired), or "".
std::string QueueServer::suppressed(const std::string& address) {
    SuppressionRecord su;
    uint64_t now = clock_.now();
    if (!store_.find_suppression(addr::lower(address), su) || now >= su.until) return "";
    auto cls = BounceClass(su.bounce_class);
    // Appended piece by piece: GCC 12 warns wrongly (-Warray-bounds) on a long chain of operator+.
    std::string s = cls == BounceClass::bad_domain ? "5.1.2" : "5.1.1";
    s.append(" recipient is on the suppression list since ").append(utc_text(clock_.shown(su.since)));
    s.append(" until ").append(utc_text(clock_.shown(su.until))).append(" (");
    if (su.msgid) s.append(bounce_class_name(cls)).append(", bounce of ").append(format_qid(su.msgid));
    else s.append("added by an admin");
    return s.append("): ").append(su.reason);
}

std::vector<uint32_t> QueueServer::send_job(uint64_t link, uint64_t msgid, const std::vector<uint32_t>& indices,
                                            const Nexthop& to) {
    Peer& p = *find_peer(link);  // the scheduler offers only links that are up: a peer is retired before it goes
    ActiveSet::Sendable job = active_->sendable(msgid, indices);
    if (job.rcpts.empty()) return {};
    std::string qid = format_qid(msgid);
    // O_NONBLOCK: a FIFO planted in body/ must not stall the queue; the check below refuses it.
    int fd = openat(body_dir_fd_.get(), qid.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        active_->corrupt(msgid, std::string("body: ") + strerror(errno));
        return {};
    }
    if (std::string why = body_fd_problem(fd, job.msg->size); !why.empty()) {
        ::close(fd);
        active_->corrupt(msgid, why);
        return {};
    }
    ipc::Message m = make_deliver(msgid, *job.msg, job.rcpts, to);
    m.add_fd(UniqueFd(fd));
    std::vector<uint32_t> sent;
    sent.reserve(job.rcpts.size());
    for (auto& [idx, rec] : job.rcpts) sent.push_back(idx);
    active_->sent(msgid, sent);
    LOG_DEBUG("event=dispatch qid=%s nexthop=%s tls_level=%s source=%s nrcpt=%zu peer=%s", qid.c_str(),
              log::safe(to.host).c_str(), to.tls_level.empty() ? "default" : to.tls_level.c_str(),
              to.source.empty() ? "default" : to.source.c_str(), sent.size(), p.link->desc().c_str());
    p.link->send(std::move(m));  // a send error only retires the peer; drop_peer() requeues later
    return sent;
}

void QueueServer::on_deliver_result(Peer& p, ipc::Message& m) {
    DeliverResult res;
    std::string err;
    if (!parse_deliver_result(m, res, err)) daemon::malformed(p.link->desc(), "deliver_result: " + err);
    if (!res.mx_host.empty() && !res.results.empty() && active_->holds(res.msgid, res.results.front().index))
        learn_mx(rcpt_domain(active_->recipient(res.msgid, res.results.front().index).addr), res.mx_host);
    // TLS-RPT counts are advisory: bad ones are dropped (and logged), the results still count.
    if (!res.tlsrpt.empty() && !tlsrpt_.add(res.tlsrpt, res.tlsrpt_rua, clock_.wall_now(), err))
        LOG_WARN("event=tlsrpt_dropped peer=%s reason=\"%s\"", p.link->desc().c_str(), log::safe(err).c_str());
    std::vector<uint64_t> done;
    for (auto& r : res.results) {
        auto job = sched_->answered(p.id, res.msgid, r.index, r.status, r.text);
        if (!job) daemon::malformed(p.link->desc(), "result for a recipient not in flight on this link");
        // The next hop once: a transport_map target already names its transport ("smtp:[host]:25").
        bool named = job->nexthop.rfind("smtp:", 0) == 0 || job->nexthop.rfind("lmtp:", 0) == 0;
        active_->settle(res.msgid, r.index, r, named ? job->nexthop : std::string(role_name(p.role)) + ":" + job->nexthop);
        if (job->last) done.push_back(job->job);
    }
    for (uint64_t id : done) sched_->finish(id);
}

}  // namespace mta::queue
