// mta-resolver's loop: serves resolve_request on the master link and on peer links, one libunbound
// async query per request, each answered within kRequestTimeoutSeconds. Peers are not trusted: a
// request with missing or ill-typed fields is malformed and ends the process (exit 2). A name that is
// not a valid DNS name is data, not a violation (it can come from a remote envelope): it is answered
// with rcode 65535 "invalid query name". An unsupported qtype is fatal from a peer, answered from the master.
#include "resolver/server.h"

#include <cstdlib>
#include <event2/event.h>
#include <unbound.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/mta_sts.h"
#include "common/wire/wire.h"
#include "resolver/rdata.h"

namespace mta::resolver {
namespace {

constexpr std::size_t kMaxPending = 4096;
constexpr std::size_t kMaxResultRRs = 65536;  // libunbound's own limits are far lower; this only bounds our loop

bool known_peer_role(Role r) {
    return r == Role::smtp || r == Role::queue || r == Role::smtpd || r == Role::local || r == Role::msgauth;
}

RawResult raw_result(const ub_result* res) {
    RawResult r;
    r.rcode = res->rcode;
    r.secure = res->secure != 0;
    r.bogus = res->bogus != 0;
    if (res->why_bogus) r.why_bogus = res->why_bogus;
    for (std::size_t i = 0; res->data && res->len && res->data[i] && i < kMaxResultRRs; i++)
        r.rdata.emplace_back(res->data[i], res->len[i] > 0 ? std::size_t(res->len[i]) : 0);
    return r;
}

}  // namespace

Server::Server(event_base* base, UbCtxPtr ctx, Config cfg)
    : base_(base), ctx_(std::move(ctx)), cfg_(std::move(cfg)), reaper_(base) {}

Server::~Server() {
    pending_.clear();
    links_.clear();
    master_.reset();
}

void Server::enable_mta_sts(SSL_CTX* https, std::string cache_dir) {
    sts_https_ = https;
    sts_cache_dir_ = std::move(cache_dir);
}

bool Server::start(std::string& err) {
    if (!sts_cache_dir_.empty()) {
        auto dns = [this](const std::string& name, uint16_t qtype, StsService::AnswerCb cb) {
            start_query(0, 0, name, qtype, std::move(cb));
        };
        sts_ = std::make_unique<StsService>(base_, sts_https_, sts_cache_dir_, cfg_.mta_sts_port, dns);
        if (!sts_->start(err)) return false;
    }
    ub_event_.reset(event_new(base_, ub_fd(ctx_.get()), EV_READ | EV_PERSIST, &Server::on_ub_readable, this));
    if (!ub_event_ || event_add(ub_event_.get(), nullptr) != 0) {
        err = "cannot watch the libunbound result pipe";
        return false;
    }
    return start_worker(ctx_.get(), &Server::on_ub_result, err);
}

void Server::attach_master(UniqueFd fd) {
    master_id_ = next_link_id_++;
    master_ = std::make_unique<daemon::MasterLink>(base_, Role::resolver, std::move(fd), *this);
}

uint64_t Server::add_link(UniqueFd fd, const std::string& desc, bool hello_seen) {
    uint64_t id = next_link_id_++;
    auto on_msg = [this, id](ipc::Message& m) { handle_peer(id, m); };
    auto on_close = [this, id](bool bad, const std::string& why) { on_link_close(id, bad, why); };
    links_[id] = std::make_unique<ipc::Link>(base_, std::move(fd), Role::resolver, desc, on_msg, on_close, hello_seen);
    return id;
}

void Server::on_link_close(uint64_t link_id, bool bad, const std::string& why) {
    auto it = links_.find(link_id);
    std::string desc = it != links_.end() ? it->second->desc() : "?";
    if (bad) malformed(link_id, why);
    LOG_INFO("event=peer_closed peer=%s reason=\"%s\"", desc.c_str(), log::safe(why).c_str());
    retire_link(link_id);
}

void Server::retire_link(uint64_t link_id) {
    auto it = links_.find(link_id);
    if (it == links_.end()) return;
    for (auto p = peers_.begin(); p != peers_.end(); ++p)
        if (p->second == link_id) { peers_.erase(p); break; }
    reaper_.bury(std::move(it->second));
    links_.erase(it);
}

void Server::malformed(uint64_t link_id, const std::string& why) {
    if (link_id == master_id_) daemon::malformed(Role::master, why);
    auto it = links_.find(link_id);
    daemon::malformed(it != links_.end() ? it->second->desc() : "?", why);
}

void Server::on_request(ipc::Message& m) {
    if (m.type != ipc::Type::resolve_request)
        malformed(master_id_, std::string("unexpected message ") + ipc::type_name(m.type));
    handle_resolve(master_id_, m);
}

void Server::on_master_closed() { clean_exit(); }

void Server::handle_peer(uint64_t link_id, ipc::Message& m) {
    if (m.type != ipc::Type::resolve_request)
        malformed(link_id, std::string("unexpected message ") + ipc::type_name(m.type));
    handle_resolve(link_id, m);
}

void Server::on_peer(Role role, uint64_t instance, UniqueFd fd) {
    if (!known_peer_role(role)) malformed(master_id_, std::string("peer of unexpected role ") + role_name(role));
    std::string key = std::string(role_name(role)) + "/" + std::to_string(instance);
    if (auto old = peers_.find(key); old != peers_.end()) {
        LOG_INFO("event=peer_replaced peer=%s", key.c_str());
        retire_link(old->second);
    }
    peers_[key] = add_link(std::move(fd), key, false);
    LOG_DEBUG("event=peer_attached peer=%s", key.c_str());
}

void Server::on_reload(Config next, const wire::Config&) {
    if (next.dns_forwarder != cfg_.dns_forwarder || next.dns_insecure_domains != cfg_.dns_insecure_domains ||
        next.dns_trust_anchors != cfg_.dns_trust_anchors)
        LOG_WARN("event=reload_partial reason=\"DNS settings change only when mta-resolver restarts\"");
    cfg_ = std::move(next);
    if (sts_) sts_->set_port(cfg_.mta_sts_port);
}

void Server::handle_resolve(uint64_t link_id, ipc::Message& m) {
    wire::ResolveRequest req;
    if (std::string why; !wire::decode(m, req, why)) malformed(link_id, "resolve_request: " + why);
    if (req.qtype == sts::kQtypeMtaSts) {
        auto domain = normalize_name(req.name);
        if (!domain || domain->find('.') == std::string::npos) return send_reply(link_id, m.reqid, error_answer("invalid domain"));
        if (!sts_) return send_reply(link_id, m.reqid, error_answer("MTA-STS is not available"));
        if (stopping_) return send_reply(link_id, m.reqid, error_answer("shutting down"));
        uint64_t reqid = m.reqid;
        return sts_->lookup(*domain, [this, link_id, reqid](const Answer& a) { send_reply(link_id, reqid, a); });
    }
    if (!supported_qtype(req.qtype)) {
        // From a peer this is a protocol violation; from the master it is an admin's relayed
        // "resolve NAME QTYPE" (mtactl/mtadns), and a typo there must not restart us.
        if (link_id != master_id_) malformed(link_id, "unsupported qtype " + std::to_string(req.qtype));
        return send_reply(link_id, m.reqid, error_answer("unsupported qtype"));
    }
    // A badly formed name is data (it may come from a remote envelope), not a protocol violation.
    auto name = normalize_name(req.name);
    if (!name) {
        LOG_DEBUG("event=resolve name=\"%s\" type=%s rcode=%llu reason=invalid_name", log::safe(req.name).c_str(),
                  qtype_name(uint16_t(req.qtype)), (unsigned long long)kRcodeError);
        return send_reply(link_id, m.reqid, error_answer("invalid query name"));
    }
    if (stopping_) return send_reply(link_id, m.reqid, error_answer("shutting down"));
    start_query(link_id, m.reqid, *name, uint16_t(req.qtype), nullptr);
}

void Server::start_query(uint64_t link_id, uint64_t reqid, const std::string& name, uint16_t qtype,
                         StsService::AnswerCb done) {
    auto answer_now = [&](const Answer& a) {
        if (done) done(a);  // synchronously: StsService registered its flight before asking
        else send_reply(link_id, reqid, a);
    };
    if (pending_.size() >= kMaxPending) return answer_now(error_answer("resolver busy"));
    auto p = std::make_unique<Pending>();
    p->self = this;
    p->id = next_pending_id_++;
    p->link_id = link_id;
    p->reqid = reqid;
    p->name = name;
    p->qtype = qtype;
    p->done = std::move(done);
    int rc = ub_resolve_async(ctx_.get(), p->name.c_str(), p->qtype, 1, p.get(), &Server::on_ub_result, &p->async_id);
    if (rc != 0) {
        LOG_WARN("event=resolve_failed name=%s type=%s error=\"%s\"", p->name.c_str(), qtype_name(p->qtype), ub_strerror(rc));
        return answer_now(error_answer(ub_strerror(rc)));
    }
    p->timer.reset(evtimer_new(base_, &Server::on_timeout, p.get()));
    timeval tv = {kRequestTimeoutSeconds, 0};
    evtimer_add(p->timer.get(), &tv);
    pending_[p->id] = std::move(p);
}

void Server::on_ub_readable(int, short, void* arg) {
    auto self = static_cast<Server*>(arg);
    int rc = ub_process(self->ctx_.get());
    if (rc != 0) {
        LOG_ERROR("event=dns_worker_failed error=\"%s\" action=exit", ub_strerror(rc));
        exit(1);
    }
}

void Server::on_ub_result(void* arg, int err, ub_result* result) {
    UbResultPtr owned(result);
    if (!arg) return;  // the start-up query that forked the worker
    auto p = static_cast<Pending*>(arg);
    if (err != 0) return p->self->finish(p->id, error_answer(ub_strerror(err)));
    if (!result) return p->self->finish(p->id, error_answer("no result"));
    p->self->finish(p->id, build_answer(p->qtype, raw_result(result)));
}

void Server::on_timeout(int, short, void* arg) {
    auto p = static_cast<Pending*>(arg);
    ub_cancel(p->self->ctx_.get(), p->async_id);
    p->self->finish(p->id, error_answer("timeout"));
}

void Server::finish(uint64_t pending_id, const Answer& a) {
    auto it = pending_.find(pending_id);
    if (it == pending_.end()) return;
    std::unique_ptr<Pending> p = std::move(it->second);
    pending_.erase(it);
    LOG_DEBUG("event=resolve name=%s type=%s rcode=%llu dnssec=%s records=%zu dropped=%zu%s%s%s", p->name.c_str(),
              qtype_name(p->qtype), (unsigned long long)a.rcode, dnssec_name(a.dnssec), a.records.size(), a.dropped,
              a.text.empty() ? "" : " text=\"", log::safe(a.text).c_str(), a.text.empty() ? "" : "\"");
    if (a.dropped && a.dnssec != ipc::DnssecStatus::bogus)
        LOG_WARN("event=records_dropped name=%s type=%s dropped=%zu", p->name.c_str(), qtype_name(p->qtype), a.dropped);
    count_query(p->qtype, a, std::chrono::steady_clock::now() - p->started);
    if (p->done) p->done(a);
    else send_reply(p->link_id, p->reqid, a);
    maybe_exit_after_stop();
}

// mta_dns_queries_total and mta_dns_query_seconds: every lookup libunbound answered or that timed out.
void Server::count_query(uint16_t qtype, const Answer& a, std::chrono::steady_clock::duration took) {
    const char* result = a.dnssec == ipc::DnssecStatus::bogus ? "bogus"
                         : a.rcode == 0                      ? (a.records.empty() ? "nodata" : "noerror")
                         : a.rcode == 3                      ? "nxdomain"
                         : a.rcode == 2                      ? "servfail"
                         : a.rcode == kRcodeError            ? "error"
                                                             : "other";
    auto& reg = metrics::registry();
    reg.add("mta_dns_queries_total", metrics::labels({{"type", qtype_name(qtype)}, {"result", result}}));
    reg.observe("mta_dns_query_seconds", "", std::chrono::duration<double>(took).count());
}

void Server::send_reply(uint64_t link_id, uint64_t reqid, const Answer& a) {
    if (link_id == master_id_) {
        if (master_ && master_->open()) master_->send(reply_message(reqid, a));
        return;
    }
    auto it = links_.find(link_id);
    if (it == links_.end() || !it->second->open()) {
        LOG_DEBUG("event=reply_dropped reason=\"requesting link is gone\" reqid=%llu", (unsigned long long)reqid);
        return;
    }
    it->second->send(reply_message(reqid, a));
}

void Server::on_stop() {
    if (stopping_) return;
    stopping_ = true;
    LOG_INFO("event=stopping pending=%zu", pending_.size());
    maybe_exit_after_stop();
    stop_timer_.reset(evtimer_new(base_, &Server::on_stop_grace, this));
    timeval tv = {kStopGraceSeconds, 0};
    evtimer_add(stop_timer_.get(), &tv);
}

void Server::on_stop_grace(int, short, void* arg) {
    auto self = static_cast<Server*>(arg);
    while (!self->pending_.empty()) {
        Pending* p = self->pending_.begin()->second.get();
        ub_cancel(self->ctx_.get(), p->async_id);
        self->finish(p->id, error_answer("shutting down"));  // exits once the last one is answered
    }
    self->maybe_exit_after_stop();
}

void Server::maybe_exit_after_stop() {
    if (!stopping_ || !pending_.empty()) return;
    if (master_) master_->drain();
    for (auto& [id, link] : links_) link->drain();
    LOG_INFO("event=stopped");
    clean_exit();
}

void Server::clean_exit() {
    ctx_.reset();  // ub_ctx_delete tells the forked worker to quit and reaps it
    exit(0);
}

}  // namespace mta::resolver
