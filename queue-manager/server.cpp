// QueueServer: links to the master and peers, the smtpd side (body_open, commit, abort), the wiring of
// the parts and the stop sequence. Peers are less privileged than the queue: any malformed message from
// them ends this process (exit 2).
#include "queue-manager/server.h"

#include <cerrno>
#include <cstring>
#include <event2/event.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/wire/wire.h"
#include "queue-manager/bounce.h"
#include "queue-manager/qid.h"

namespace mta::queue {

QueueServer::QueueServer(event_base* base, Config cfg, Store& store, Clock clock, std::string body_dir)
    : base_(base), cfg_(std::move(cfg)), store_(store), clock_(std::move(clock)), body_dir_(std::move(body_dir)),
      reaper_(base, [this] { maybe_finish_stop(); }) {
    stop_ev_.reset(evtimer_new(base_, [](evutil_socket_t, short, void* a) {
        auto* self = static_cast<QueueServer*>(a);
        LOG_WARN("event=stop_timeout inflight_jobs=%zu", self->sched_->jobs_in_flight());
        self->group_->flush();
        self->save_state();
        self->exit_now(0);
    }, this));
    state_ev_.reset(event_new(base_, -1, EV_PERSIST, [](evutil_socket_t, short, void* a) {
        auto* self = static_cast<QueueServer*>(a);
        self->tlsrpt_.tick(self->clock_.wall_now());
        self->save_state();
    }, this));
}

QueueServer::~QueueServer() = default;

void QueueServer::load_state() {
    store_.for_each_state("tlsrpt/", [&](std::string_view key, std::string_view value) { tlsrpt_.load(key, value); });
    constexpr std::string_view prefix = "warmup/";
    store_.for_each_state(prefix, [&](std::string_view key, std::string_view value) {
        SourcePools::State st;
        std::string err;
        std::string address(key.substr(prefix.size()));
        if (SourcePools::decode(value, st, err)) sched_->sources().load(address, st);
        else LOG_WARN("event=state_unreadable key=%s reason=\"%s\"", log::safe(std::string(key)).c_str(), err.c_str());
    });
}

int QueueServer::save_state() {
    std::vector<Op> ops;
    auto put = [&](std::string key, std::string value) {
        Op op;
        op.kind = Op::Kind::put_state;
        op.address = std::move(key);
        op.value = std::move(value);
        ops.push_back(std::move(op));
    };
    for (auto& [address, bytes] : sched_->sources().dirty()) put("warmup/" + address, std::move(bytes));
    if (std::string a = clock_.anchor ? clock_.anchor() : ""; !a.empty()) put(std::string(QueueTime::kStateKey), std::move(a));
    for (auto& [key, bytes] : tlsrpt_.dirty()) put(key, std::move(bytes));
    int rc = ops.empty() ? 0 : store_.apply(ops);
    if (rc)  // the counts stay in memory; a crash before the next save loses them
        LOG_ERROR("event=state_save_failed reason=\"%s\"", Store::error_text(rc).c_str());
    return rc;
}

bool QueueServer::start(std::string& err) {
    body_dir_fd_.reset(::open(body_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!body_dir_fd_) {
        err = "open " + body_dir_ + ": " + strerror(errno);
        return false;
    }
    build_parts();
    if (!pickup_->start(err) || !open_space_probe(err)) return false;
    tables_.configure(cfg_);
    load_state();
    struct timeval every = {kStateSeconds, 0};
    evtimer_add(state_ev_.get(), &every);
    pool_ = std::make_unique<BodyPool>(body_dir_fd_.get());
    top_up_pool();
    active_->wake_at(clock_.now());
    recovery_ = std::make_unique<Recovery>(store_, body_dir_, [this](uint64_t msgid) { return active_->has(msgid); });
    recovery_ev_.reset(evtimer_new(base_, [](evutil_socket_t, short, void* a) {
        static_cast<QueueServer*>(a)->recovery_step();
    }, this));
    recovery_began_ = std::chrono::steady_clock::now();
    LOG_INFO("event=recovery_started messages=%zu first_new_id=%s", store_.count("messages"),
             format_qid(store_.first_id_this_run()).c_str());
    struct timeval now = {0, 0};
    evtimer_add(recovery_ev_.get(), &now);
    return true;
}

// One slice, then the next after the loop has served whatever is waiting (a zero timer runs after the
// poll for I/O, unlike event_active).
void QueueServer::recovery_step() {
    std::string err;
    struct timeval next = {0, 0};
    if (!recovery_->step(kRecoverySlice, err)) {
        LOG_ERROR("event=recovery_failed phase=%s reason=\"%s\" action=\"retry in 1s\"",
                  Recovery::phase_name(recovery_->phase()), log::safe(err).c_str());
        next.tv_sec = 1;
    }
    if (!recovery_->done()) {
        evtimer_add(recovery_ev_.get(), &next);
        return;
    }
    const RecoveryReport& rep = recovery_->report();
    LOG_INFO("event=recovered messages=%zu recipients=%zu scheduled=%zu corrupt=%zu quarantined=%zu "
             "orphan_bodies=%zu orphan_recipients=%zu finished=%zu schedule_added=%zu schedule_dropped=%zu "
             "seconds=%.3f",
             rep.messages, rep.recipients, rep.scheduled, rep.corrupt, rep.quarantined, rep.orphan_bodies,
             rep.orphan_recipients, rep.finished, rep.schedule_added, rep.schedule_dropped,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - recovery_began_).count());
    recovery_.reset();
    recovery_ev_.reset();
}

// Every hook between the parts is here, so who talks to whom can be read in one place.
void QueueServer::build_parts() {
    metrics::registry().on_collect([this](metrics::Registry& r) { collect_metrics(r); });
    int body = body_dir_fd_.get();
    group_ = std::make_unique<GroupCommit>(base_, store_, body, clock_.now, GroupCommit::Hooks{
        .notify = [this, body](const std::vector<Op>& results, std::vector<Op>& out) {
            return make_notifications(store_, body, cfg_, clock_, results, out);
        },
        .committed = [this](const std::vector<Op>& results, std::vector<CommitItem>& commits, bool notified) {
            committed(results, commits, notified);
        },
        .refused = [this](const CommitItem& c, bool space) { refused(c, space); },
        .dropped = [this](uint64_t msgid, uint32_t index) { active_->release(msgid, index); },
    });
    active_ = std::make_unique<ActiveSet>(base_, store_, clock_, ActiveSet::Hooks{
        .ready = [this](uint64_t msgid, const std::vector<uint32_t>& indices) { route(msgid, indices); },
        .change = [this](Op op) { group_->add_result(std::move(op)); },
    });
    sched_ = std::make_unique<Scheduler>(clock_.now, Scheduler::Hooks{
        .send = [this](uint64_t link, uint64_t msgid, const std::vector<uint32_t>& indices, const Nexthop& to) {
            return send_job(link, msgid, indices, to);
        },
        .defer = [this](uint64_t msgid, const std::vector<uint32_t>& indices, const std::string& text,
                        const std::string& relay) { return active_->defer_ready(msgid, indices, text, relay); },
        .wake_at = [this](uint64_t when) { active_->wake_at(when); },
        .postpone = [this](uint64_t msgid, const std::vector<uint32_t>& indices, uint64_t until, const std::string& text) {
            active_->postpone(msgid, indices, until, text);
        },
    });
    pickup_ = std::make_unique<Pickup>(base_, store_, body, clock_.now, [this](CommitItem c) { group_->add(std::move(c)); });
    msgauth_ = std::make_unique<PeerLink>(
        base_, reaper_, Role::queue, Role::msgauth,
        [this](ipc::Message& m) {
            wire::MsgauthReply r;
            if (std::string err; !wire::decode(m, r, err)) daemon::malformed(Role::msgauth, "msgauth_reply: " + err);
            if (auto token = msgauth_->take(m.reqid)) pickup_->msgauth_reply(*token, r);
        },
        [this](uint64_t token, const char* why) { pickup_->msgauth_lost(token, why); });
    pickup_->set_msgauth([this](ipc::Message m, uint64_t token) { return msgauth_->request(std::move(m), token, token); });
    pickup_->set_milter_socket([this](uint64_t token, std::size_t index) {
        uint64_t reqid = next_milter_reqid_++;
        milter_waiting_[reqid] = {token, index};
        const auto& list = cfg_.non_smtpd_milters;
        master_->send(wire::encode(wire::MilterConnect{index, index < list.size() ? list[index].spec : ""}, reqid));
    });
    admin_ = std::make_unique<AdminOps>(base_, store_, clock_, AdminOps::Queue{
        .flush = [this] { group_->flush(); },
        .active = [this](uint64_t msgid, uint32_t index) { return active_->holds(msgid, index); },
        .busy = [this](uint64_t msgid, uint32_t index) { return active_->busy(msgid, index); },
        .mark_inflight = [this](uint64_t msgid, uint32_t index, const std::string& verb, uint64_t uid) {
            return active_->mark_inflight(msgid, index, verb, uid);
        },
        .withdraw = [this](const AdminOps::RcptSet& rcpts) {
            for (auto& [msgid, index] : rcpts) active_->release(msgid, index);
            sched_->forget(rcpts);
        },
        .records_deleted = [this](uint64_t msgid, uint32_t n) { active_->records_deleted(msgid, n); },
        .removed = [this](uint64_t msgid) {
            active_->removed(msgid);
            pool_->remove(msgid);
        },
        .revive = [this] { sched_->revive(); },
        .wake_at = [this](uint64_t when) { active_->wake_at(when); },
        .body_prefix = [body](uint64_t msgid, std::size_t limit) { return read_body_prefix(body, msgid, limit); },
        .class_counts = [this]() -> const ClassCounts& { return active_->class_counts(); },
        .suppression_ttl = [this] { return cfg_.suppression_ttl; },
        .sources = [this]() -> SourcePools& {
            tables_.refresh();
            refresh_sources();
            return sched_->sources();
        },
        .save_state = [this] { return save_state(); },
        .retry_policy = [this] { return RetryPolicy::from(cfg_); },
        .destination = [this](const std::string& rcpt, const MessageRecord& m) { return destination_of(rcpt, m); },
        .tlsrpt = [this](const std::string& sub, bool json) {
            uint64_t now = clock_.wall_now();
            std::string out = sub == "send" ? tlsrpt_.send(now) : json ? tlsrpt_.list_json(now) : tlsrpt_.list_text(now);
            if (sub == "send") save_state();
            return out;
        },
        .reply = [this](ipc::Message m) { master_->send(std::move(m)); },
    });
    configure_parts();
}

void QueueServer::configure_parts() {
    tlsrpt_.configure(cfg_);
    active_->configure(cfg_);
    sched_->configure(cfg_.delivery_concurrency, RetryPolicy::from(cfg_).minimal_backoff);
    sched_->shaper().configure(cfg_.destination_slowdown_time, cfg_.slowdown_patterns);
    pickup_->configure(cfg_);
}

// O_PATH: the descriptor mta-smtpd gets allows fstat/fstatvfs and nothing else (no read, no write, and
// being no directory, no openat either: its chroot stays closed).
bool QueueServer::open_space_probe(std::string& err) {
    std::string name(kSpaceProbe);
    UniqueFd made(openat(body_dir_fd_.get(), name.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0400));
    space_probe_.reset(openat(body_dir_fd_.get(), name.c_str(), O_PATH | O_CLOEXEC | O_NOFOLLOW));
    struct stat st;
    if (!made || !space_probe_ || fstat(space_probe_.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
        err = body_dir_ + "/" + name + ": not a plain file we can create (" + strerror(errno) + ")";
        return false;
    }
    return true;
}

void QueueServer::send_space_probe(Peer& p) {
    int fd = fcntl(space_probe_.get(), F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {  // smtpd then skips the free-space check; the commit still answers 452 on ENOSPC
        LOG_ERROR("event=space_probe_failed peer=%s reason=\"%s\"", p.link->desc().c_str(), strerror(errno));
        return;
    }
    wire::SpoolProbe probe{UniqueFd(fd)};
    p.link->send(wire::encode(probe, 0));
}

void QueueServer::attach_master(UniqueFd fd) {
    master_ = std::make_unique<daemon::MasterLink>(base_, Role::queue, std::move(fd), *this);
}

void QueueServer::on_master_closed() { exit_now(0); }

void QueueServer::top_up_pool() {
    if (pool_->stocked() >= kPoolLow) return;
    std::vector<uint64_t> ids;
    std::string err;
    for (std::size_t i = 0; i < kPoolBatch; i++) {
        uint64_t id;
        if (!store_.allocate_id(id, err)) break;
        ids.push_back(id);
    }
    pool_->create(std::move(ids));
}

void QueueServer::exit_now(int code) {
    if (pool_) pool_->shutdown();
    if (master_) master_->drain();
    for (auto& [id, p] : peers_) p->link->drain();
    if (msgauth_) msgauth_->drain();
    exit(code);
}

void QueueServer::on_request(ipc::Message& m) {
    if (m.type == ipc::Type::milter_socket || m.type == ipc::Type::fail) return on_milter_socket(m);
    if (m.type != ipc::Type::admin_request && m.type != ipc::Type::admin_more)
        daemon::malformed(Role::master, std::string("unexpected message ") + ipc::type_name(m.type));
    admin_->on_request(m);
}

// mtad's answer to a milter_connect for non_smtpd_milters (master/master_milter.cpp).
void QueueServer::on_milter_socket(ipc::Message& m) {
    auto it = milter_waiting_.find(m.reqid);
    if (it == milter_waiting_.end()) daemon::malformed(Role::master, "milter_socket for no request");
    auto [token, index] = it->second;
    milter_waiting_.erase(it);
    std::string err;
    if (m.type == ipc::Type::fail) {
        wire::Fail f;
        if (!wire::decode(m, f, err)) daemon::malformed(Role::master, "bad fail: " + err);
        return pickup_->milter_socket_failed(token, index, f.text);
    }
    wire::MilterSocket sock;
    if (!wire::decode(m, sock, err)) daemon::malformed(Role::master, "bad milter_socket: " + err);
    pickup_->milter_socket(token, index, std::move(sock.fd));
}

void QueueServer::on_peer(Role role, uint64_t instance, UniqueFd fd) {
    if (role == Role::msgauth && msgauth_) return msgauth_->attach(std::move(fd));
    if (role != Role::smtpd && role != Role::smtp && role != Role::local)
        daemon::malformed(Role::master, std::string("peer role ") + role_name(role));
    auto key = std::make_pair(role, instance);
    if (auto old = peer_ids_.find(key); old != peer_ids_.end()) {
        if (Peer* p = find_peer(old->second)) retire_peer(*p);
    }
    auto p = std::make_unique<Peer>();
    uint64_t id = next_peer_id_++;
    p->id = id;
    p->role = role;
    p->instance = instance;
    std::string desc = std::string(role_name(role)) + "#" + std::to_string(instance);
    p->link = std::make_unique<ipc::Link>(
        base_, std::move(fd), Role::queue, desc, [this, id](ipc::Message& msg) { on_peer_message(id, msg); },
        [this, id](bool bad, const std::string& why) { on_peer_close(id, bad, why); });
    peers_[id] = std::move(p);
    peer_ids_[key] = id;
    LOG_INFO("event=peer_up peer=%s", desc.c_str());
    if (role == Role::smtpd) send_space_probe(*peers_[id]);
    else sched_->link_up(id, role == Role::local, instance);
}

QueueServer::Peer* QueueServer::find_peer(uint64_t id) {
    auto it = peers_.find(id);
    return it == peers_.end() ? nullptr : it->second.get();
}

// Cleanup runs from its own event so no dispatch code is ever re-entered from inside a link callback.
void QueueServer::retire_peer(Peer& p) {
    if (p.closed) return;
    p.closed = true;
    auto it = peer_ids_.find({p.role, p.instance});
    if (it != peer_ids_.end() && it->second == p.id) peer_ids_.erase(it);
    if (p.role != Role::smtpd) sched_->link_retired(p.id);
    uint64_t id = p.id;
    reaper_.later([this, id] { drop_peer(id); });
}

void QueueServer::on_peer_close(uint64_t id, bool bad, const std::string& why) {
    Peer* p = find_peer(id);
    if (!p) return;
    if (bad) daemon::malformed(p->link->desc(), why);
    LOG_INFO("event=peer_down peer=%s reason=\"%s\" inflight=%zu", p->link->desc().c_str(), log::safe(why).c_str(),
             sched_->rcpts_in_flight(id));
    retire_peer(*p);
}

// A closed peer's unfinished work: bodies it was writing are removed, its deliveries scheduled again.
void QueueServer::drop_peer(uint64_t id) {
    Peer* p = find_peer(id);
    if (!p) return;
    if (p->role == Role::smtpd) {
        for (auto it = pending_bodies_.begin(); it != pending_bodies_.end();) {
            if (it->second != id) { ++it; continue; }
            pool_->remove(it->first);
            it = pending_bodies_.erase(it);
        }
    } else {
        // A deliverer went away: what it had in flight is retried soon.
        sched_->link_down(id, [this](uint64_t msgid, uint32_t index) { active_->agent_lost(msgid, index); });
    }
    peers_.erase(id);
}

void QueueServer::on_peer_message(uint64_t id, ipc::Message& m) {
    Peer* p = find_peer(id);
    if (!p || p->closed) return;
    bool smtpd = p->role == Role::smtpd;
    if (smtpd && m.type == ipc::Type::body_open) on_body_open(*p, m);
    else if (smtpd && m.type == ipc::Type::commit) on_commit(*p, m);
    else if (smtpd && m.type == ipc::Type::abort) on_abort(*p, m);
    else if (!smtpd && m.type == ipc::Type::deliver_result) on_deliver_result(*p, m);
    else daemon::malformed(p->link->desc(), std::string("unexpected message ") + ipc::type_name(m.type));
}

void QueueServer::reply_fail(Peer& p, uint64_t reqid, int code, const char* enhanced, const std::string& text) {
    p.link->send(wire::encode(wire::Fail{code, enhanced, text}, reqid));
}

void QueueServer::on_body_open(Peer& p, ipc::Message& m) {
    wire::BodyOpen req;
    if (std::string err; !wire::decode(m, req, err)) daemon::malformed(p.link->desc(), "body_open: " + err);
    if (stopping_) return reply_fail(p, m.reqid, 451, "4.3.0", "Queue shutting down");
    if (auto ready = pool_->take()) {
        pending_bodies_[ready->first] = p.id;
        wire::BodyOpenOk ok{ready->first, std::move(ready->second)};
        p.link->send(wire::encode(ok, m.reqid));
        top_up_pool();
        return;
    }
    for (int tries = 0; tries < 3; tries++) {
        uint64_t id;
        std::string err;
        if (!store_.allocate_id(id, err)) {
            LOG_ERROR("event=id_allocation_failed reason=\"%s\"", log::safe(err).c_str());
            break;
        }
        int fd = openat(body_dir_fd_.get(), format_qid(id).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) {
            LOG_ERROR("event=body_create_failed qid=%s reason=\"%s\"", format_qid(id).c_str(), strerror(errno));
            break;
        }
        pending_bodies_[id] = p.id;
        wire::BodyOpenOk ok{id, UniqueFd(fd)};
        p.link->send(wire::encode(ok, m.reqid));
        return;
    }
    reply_fail(p, m.reqid, 451, "4.3.0", "Local error in processing: cannot create queue file");
}

void QueueServer::on_commit(Peer& p, ipc::Message& m) {
    CommitRequest req;
    std::string err;
    if (!parse_commit(m, req, err)) daemon::malformed(p.link->desc(), "commit: " + err);
    auto it = pending_bodies_.find(req.msgid);
    if (it == pending_bodies_.end() || it->second != p.id)
        return reply_fail(p, m.reqid, 451, "4.3.0", "Local error in processing: unknown queue file");
    pending_bodies_.erase(it);
    std::string qid = format_qid(req.msgid);
    struct stat st;
    if (fstatat(body_dir_fd_.get(), qid.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
        LOG_ERROR("event=commit_failed qid=%s reason=\"body file: %s\"", qid.c_str(), strerror(errno));
        unlinkat(body_dir_fd_.get(), qid.c_str(), 0);
        return reply_fail(p, m.reqid, 451, "4.3.0", "Local error in processing: queue file lost");
    }
    req.msg.size = uint64_t(st.st_size);
    // mta-smtpd's arrival is on the wall clock; the queue keeps its own time.
    req.msg.arrival = req.has_arrival ? clock_.from_wall(req.msg.arrival) : clock_.now();
    group_->add(CommitItem{p.id, m.reqid, req.msgid, std::move(req.msg), std::move(req.rcpts), {}});
}

// After a group commit: the results' recipients leave the active set (or wait for their next
// attempt), finished messages' bodies go, and new messages are answered and handed to delivery.
void QueueServer::committed(const std::vector<Op>& results, std::vector<CommitItem>& commits, bool notified) {
    if (notified) active_->wake_at(clock_.now());
    for (auto& op : results) {
        switch (op.kind) {
        case Op::Kind::put_recipient:
            if (op.rcpt.scheduled()) active_->wake_at(op.rcpt.next_attempt);
            active_->release(op.msgid, op.index);
            break;
        case Op::Kind::delete_recipient:
            active_->release(op.msgid, op.index);
            break;
        case Op::Kind::delete_message:
            pool_->remove(op.msgid);
            LOG_INFO("event=removed qid=%s", format_qid(op.msgid).c_str());
            break;
        default:
            break;
        }
    }
    for (auto& c : commits) {
        std::string qid = format_qid(c.msgid);
        LOG_INFO("event=queued qid=%s from=<%s> nrcpt=%zu size=%llu%s%s%s", qid.c_str(), log::safe(c.msg.sender).c_str(),
                 c.rcpts.size(), (unsigned long long)c.msg.size, c.msg.hold_reason.empty() ? "" : " held=\"",
                 log::safe(c.msg.hold_reason).c_str(), c.msg.hold_reason.empty() ? "" : "\"");
        if (!c.maildrop.empty()) pickup_->committed(c.maildrop, qid);
        else if (Peer* p = find_peer(c.peer); p && !p->closed) p->link->send(wire::encode(wire::CommitOk{c.msgid}, c.reqid));
    }
    // Straight to delivery, unless the active set is full (then the schedule scan takes them later) or
    // the message was queued held (then it waits for mtaqueue release).
    for (auto& c : commits)
        if (c.msg.hold_reason.empty()) active_->admit(c.msgid, std::move(c.msg), std::move(c.rcpts));
    maybe_finish_stop();
}

void QueueServer::refused(const CommitItem& c, bool space) {
    if (!c.maildrop.empty()) return pickup_->refused(c.maildrop);  // the file stays and is picked up again later
    if (Peer* p = find_peer(c.peer); p && !p->closed) {
        if (space) reply_fail(*p, c.reqid, 452, "4.3.1", "Insufficient system storage");
        else reply_fail(*p, c.reqid, 451, "4.3.0", "Local error in processing: queue write failed");
    }
}

void QueueServer::on_abort(Peer& p, ipc::Message& m) {
    wire::Abort req;
    if (std::string err; !wire::decode(m, req, err)) daemon::malformed(p.link->desc(), "abort: " + err);
    auto it = pending_bodies_.find(req.msgid);
    if (it == pending_bodies_.end() || it->second != p.id) {
        LOG_WARN("event=abort_unknown qid=%s peer=%s", format_qid(req.msgid).c_str(), p.link->desc().c_str());
        return;
    }
    pending_bodies_.erase(it);
    pool_->remove(req.msgid);
}

void QueueServer::on_reload(Config next, const wire::Config&) {
    if (next.spool_dir != cfg_.spool_dir) LOG_WARN("event=config_restart_needed key=spool_dir");
    cfg_ = std::move(next);
    tables_.configure(cfg_);
    configure_parts();
    sched_->pump_all();
}

void QueueServer::on_stop() {
    if (stopping_) return;
    LOG_INFO("event=stopping inflight_jobs=%zu", sched_->jobs_in_flight());
    stopping_ = true;
    active_->stop();
    sched_->stop();
    pickup_->stop();
    group_->flush();
    struct timeval tv = {8, 0};
    evtimer_add(stop_ev_.get(), &tv);
    maybe_finish_stop();
}

void QueueServer::maybe_finish_stop() {
    if (!stopping_ || sched_->jobs_in_flight() || !group_->idle()) return;
    save_state();
    LOG_INFO("event=stopped");
    exit_now(0);
}

}  // namespace mta::queue
