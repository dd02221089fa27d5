// mta-smtpd process logic: master and queue links, routing queue replies to sessions, reload and
// graceful stop. Accepting and the per-client limits are in smtpd_accept.cpp.
#include "smtpd/smtpd_server.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/metrics.h"
#include "common/wire/wire.h"
#include "smtpd/smtpd_policy.h"
#include "smtpd/smtpd_tls.h"

namespace mta::smtpd {
namespace {

constexpr int kStopGraceSeconds = 10;
constexpr int kTableCheckSeconds = 10;

// Queue "fail" replies are shown to clients: wire::decode checks the code, the enhanced code and the
// text; only printable ASCII of the text goes into the reply.
bool parse_fail(const ipc::Message& m, int& code, std::string& enh, std::string& text, std::string& err) {
    wire::Fail f;
    if (!wire::decode(m, f, err)) return false;
    code = f.code;
    enh = f.enhanced.empty() ? (code < 500 ? "4.3.0" : "5.3.0") : f.enhanced;
    text.clear();
    for (char ch : f.text)
        if (ch >= 0x20 && ch < 0x7f) text += ch;
    if (text.empty()) text = "Queue error";
    return true;
}

}  // namespace

Server::Server(event_base* base, Config cfg, std::shared_ptr<const Resources> res, UniqueFd master)
    : base_(base), cfg_(std::make_shared<const Config>(std::move(cfg))), res_(std::move(res)),
      reaper_(base, [this] { exit_if_stopped(); }),
      queue_(base, reaper_, Role::smtpd, Role::queue, [this](ipc::Message& m) { on_queue(m); },
             [this](uint64_t sid, const char*) {
                 if (auto it = sessions_.find(sid); it != sessions_.end()) it->second->on_queue_lost();
             }),
      msgauth_(base, reaper_, Role::smtpd, Role::msgauth, [this](ipc::Message& m) { on_msgauth(m); },
               [this](uint64_t sid, const char* why) {
                   if (auto it = sessions_.find(sid); it != sessions_.end()) it->second->on_msgauth_lost(why);
               }),
      dns_(base) {
    resume_timer_.reset(evtimer_new(base_, &Server::timer_cb, this));
    metrics::registry().on_collect([this](metrics::Registry& r) { r.set("mta_smtpd_sessions_active", "", sessions_.size()); });
    stop_timer_.reset(evtimer_new(base_, &Server::stop_deadline_cb, this));
    table_timer_.reset(event_new(base_, -1, EV_PERSIST, &Server::table_check_cb, this));
    anvil_timer_.reset(event_new(base_, -1, EV_PERSIST, &Server::anvil_timer_cb, this));
    dnsbl_timer_.reset(event_new(base_, -1, EV_PERSIST, &Server::dnsbl_timer_cb, this));
    if (res_->auth_users || res_->local_recipients || res_->alias_map || res_->virtual_map) {
        timeval tv{kTableCheckSeconds, 0};
        event_add(table_timer_.get(), &tv);
    }
    master_ = std::make_unique<daemon::MasterLink>(base_, Role::smtpd, std::move(master), *this);
}

Server::~Server() = default;

void Server::on_request(ipc::Message& m) {
    switch (m.type) {
    case ipc::Type::anvil_verdict: on_anvil_verdict(m); break;
    case ipc::Type::anvil_auth_count: on_anvil_auth_count(m); break;
    case ipc::Type::milter_socket: case ipc::Type::fail: on_milter_socket(m); break;
    default: malformed(Role::master, std::string("unexpected message ") + ipc::type_name(m.type));
    }
}

void Server::on_peer(Role role, uint64_t, UniqueFd fd) {
    if (role == Role::msgauth) return msgauth_.attach(std::move(fd));
    if (role == Role::resolver) {
        dns_.attach(std::make_unique<ipc::Link>(
            base_, std::move(fd), Role::smtpd, role_name(Role::resolver),
            [this](ipc::Message& m) {
                if (!dns_.on_message(m)) malformed(Role::resolver, std::string("bad ") + ipc::type_name(m.type));
            },
            [this](bool bad, const std::string& why) {
                if (bad) malformed(Role::resolver, why);
                dns_.on_close();
            }));
        return;
    }
    if (role != Role::queue) {
        LOG_WARN("event=peer_ignored role=%s", role_name(role));
        return;
    }
    queue_.attach(std::move(fd));
}

void Server::on_listen(const std::string& kind, UniqueFd fd) {
    auto l = std::make_unique<Listener>();
    l->owner = this;
    if (kind == "smtp") l->kind = ListenKind::smtp;
    else if (kind == "submission") l->kind = ListenKind::submission;
    else if (kind == "smtps") {
        l->kind = ListenKind::smtps;
        if (!res_->tls) {
            LOG_ERROR("event=listen_unsupported kind=smtps reason=\"tls_cert/tls_key not set or not loadable\"");
            return;
        }
    } else {
        malformed(Role::master, "bad listen_kind");
    }
    if (stopping_) return;
    l->fd = std::move(fd);
    l->ev.reset(event_new(base_, l->fd.get(), EV_READ | EV_PERSIST, &Server::accept_cb, l.get()));
    if (accepting_) event_add(l->ev.get(), nullptr);
    LOG_INFO("event=listening kind=%s", kind.c_str());
    listeners_.push_back(std::move(l));
}

void Server::on_reload(Config c, const wire::Config& conf) {
    // Certificates and tables were opened as root before the chroot. New PEM text from the master
    // gives a new TLS context in place; any other change to them needs a fresh process.
    bool tls_wanted = !c.tls_cert.empty() || !c.tls_key.empty();
    std::string restart_for;
    if (conf.has_pem) {
        std::string err;
        TlsContext ctx = tls_context_from_pem(conf.tls_cert_pem, conf.tls_key_pem, err);
        if (!ctx) {
            LOG_ERROR("event=tls_reload_failed reason=\"%s\" action=\"keeping the old certificate\"",
                      log::safe(err).c_str());
        } else {
            auto fresh = std::make_shared<Resources>(*res_);
            fresh->tls = std::move(ctx);
            res_ = std::move(fresh);
            LOG_INFO("event=tls_reloaded");
        }
    } else if (tls_wanted || c.tls_cert != cfg_->tls_cert || c.tls_key != cfg_->tls_key) {
        restart_for = "tls certificate";  // the files may have new contents under the same names
    }
    if (c.auth_users != cfg_->auth_users || c.local_recipients != cfg_->local_recipients ||
        c.alias_map != cfg_->alias_map || c.virtual_map != cfg_->virtual_map)
        restart_for = "tables";
    cfg_ = std::make_shared<const Config>(std::move(c));  // new sessions only; running ones keep theirs
    if (!restart_for.empty()) recycle(restart_for);
}

void Server::table_check_cb(int, short, void* arg) {
    auto* self = static_cast<Server*>(arg);
    for (auto* t : {self->res_->auth_users.get(), self->res_->local_recipients.get(), self->res_->alias_map.get(),
                    self->res_->virtual_map.get()})
        if (t && t->replaced()) {
            LOG_INFO("event=table_changed path=\"%s\"", log::safe(t->path()).c_str());
            self->recycle("table changed");
            return;
        }
}

// Like Postfix daemons after a table change: stop taking connections and exit once the current
// sessions are done (idle ones get 421 via the graceful stop); the master starts a fresh process,
// which opens the new files before it chroots.
void Server::recycle(const std::string& why) {
    if (recycling_ || stopping_) return;
    recycling_ = true;
    LOG_INFO("event=recycle reason=\"%s\" sessions=%zu", log::safe(why).c_str(), sessions_.size());
    event_del(table_timer_.get());
    begin_stop();
}

Session* Server::take_pending(uint64_t reqid, bool& known) {
    auto sid = queue_.take(reqid);
    known = sid.has_value();
    if (!known) return nullptr;
    auto s = sessions_.find(*sid);
    return s == sessions_.end() ? nullptr : s->second.get();
}

void Server::on_queue(ipc::Message& m) {
    bool known = false;
    switch (m.type) {
    case ipc::Type::body_open_ok: {
        wire::BodyOpenOk ok;
        if (std::string err; !wire::decode(m, ok, err)) malformed(Role::queue, "body_open_ok: " + err);
        Session* s = take_pending(m.reqid, known);
        if (s) {
            s->on_body_open(m.reqid, ok.msgid, std::move(ok.body));
        } else {  // the client left meanwhile: give the file back
            LOG_INFO("event=body_unclaimed qid=%s", format_qid(ok.msgid).c_str());
            queue_notify(wire::encode(wire::Abort{ok.msgid}, 0));
        }
        break;
    }
    case ipc::Type::commit_ok: {
        wire::CommitOk ok;
        if (std::string err; !wire::decode(m, ok, err)) malformed(Role::queue, "commit_ok: " + err);
        Session* s = take_pending(m.reqid, known);
        if (s) s->on_commit_ok(m.reqid, ok.msgid);
        else if (known) LOG_WARN("event=queued_client_gone qid=%s", format_qid(ok.msgid).c_str());
        break;
    }
    case ipc::Type::spool_probe: {
        // Only a plain file will do: a directory descriptor would be a way out of our chroot.
        struct stat st;
        wire::SpoolProbe probe;
        std::string err;
        if (!wire::decode(m, probe, err) || fstat(probe.fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
            malformed(Role::queue, "spool_probe needs exactly one plain-file fd");
        spool_probe_ = std::move(probe.fd);
        return;
    }
    case ipc::Type::fail: {
        int code = 0;
        std::string enh, text, err;
        if (!parse_fail(m, code, enh, text, err)) malformed(Role::queue, "fail: " + err);
        Session* s = take_pending(m.reqid, known);
        if (s) s->on_queue_fail(m.reqid, code, enh, text);
        break;
    }
    default: malformed(Role::queue, std::string("unexpected message ") + ipc::type_name(m.type));
    }
    if (!known) LOG_WARN("event=queue_reply_unmatched type=%s reqid=%llu", ipc::type_name(m.type),
                         static_cast<unsigned long long>(m.reqid));
}

std::optional<uint64_t> Server::queue_request(ipc::Message m, uint64_t session_id) {
    uint64_t reqid = next_reqid_++;
    if (!queue_.request(std::move(m), session_id, reqid)) return std::nullopt;
    return reqid;
}

std::optional<uint64_t> Server::msgauth_request(ipc::Message m, uint64_t session_id) {
    uint64_t reqid = next_reqid_++;
    if (!msgauth_.request(std::move(m), session_id, reqid)) return std::nullopt;
    return reqid;
}

std::optional<uint64_t> Server::spool_free() const {
    struct statvfs sv;
    if (!spool_probe_ || fstatvfs(spool_probe_.get(), &sv) != 0) return std::nullopt;
    return uint64_t(sv.f_bavail) * uint64_t(sv.f_frsize);
}

void Server::queue_notify(ipc::Message m) { queue_.notify(std::move(m)); }

std::time_t Server::now() const { return std::time(nullptr); }

void Server::begin_stop() {
    if (stopping_) return;
    stopping_ = true;
    LOG_INFO("event=stopping sessions=%zu", sessions_.size());
    listeners_.clear();  // closes our copies of the listening sockets
    close_waiting();
    std::vector<uint64_t> ids;
    for (auto& [id, s] : sessions_) ids.push_back(id);
    for (uint64_t id : ids) {
        auto it = sessions_.find(id);
        if (it != sessions_.end()) it->second->shutdown();
    }
    timeval tv{kStopGraceSeconds, 0};
    evtimer_add(stop_timer_.get(), &tv);
    reaper_.poke();
}

// After each reaping round: a stop finishes once the last session has gone.
void Server::exit_if_stopped() {
    if (!stopping_ || !sessions_.empty()) return;
    LOG_INFO("event=stopped");
    queue_.drain();
    msgauth_.drain();
    exit(0);
}

void Server::stop_deadline_cb(int, short, void* arg) {
    auto* self = static_cast<Server*>(arg);
    LOG_WARN("event=stop_deadline sessions=%zu", self->sessions_.size());
    self->queue_.drain();
    exit(0);
}

}  // namespace mta::smtpd
