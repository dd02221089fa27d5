// mta-smtpd accepting: new connections wait (greeting held back) for mtad's anvil verdict on the
// per-client limits, which mtad counts across all smtpd processes; then the session starts or the
// client gets 421 4.7.0. A master that does not answer within kAnvilWaitSeconds is failed open.
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/metrics.h"
#include "common/wire/wire.h"
#include "smtpd/smtpd_server.h"

namespace mta::smtpd {
namespace {

constexpr std::time_t kAnvilWaitSeconds = 2;

// IPv4-mapped IPv6 clients are IPv4 clients for mynetworks and connection limits.
void unmap_v4(sockaddr_storage& ss) {
    if (ss.ss_family != AF_INET6) return;
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (!IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) return;
    sockaddr_in s4{};
    s4.sin_family = AF_INET;
    s4.sin_port = s6->sin6_port;
    memcpy(&s4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, &s4, sizeof s4);
}

}  // namespace

std::string numeric_ip(const sockaddr_storage& ss) {
    char buf[INET6_ADDRSTRLEN] = "unknown";
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
    return buf;
}

uint16_t numeric_port(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
    return 0;
}

const char* listen_kind_name(ListenKind k) {
    return k == ListenKind::smtp ? "smtp" : k == ListenKind::submission ? "submission" : "smtps";
}

void Server::accept_cb(int, short, void* arg) {
    auto* l = static_cast<Listener*>(arg);
    l->owner->accept_from(*l);
}

void Server::accept_from(Listener& l) {
    for (int i = 0; i < 32 && accepting_; i++) {  // bounded: other sessions need the loop too
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        int fd = accept4(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                LOG_WARN("event=accept_failed error=\"%s\"", strerror(errno));
                pause_accepting(1);
            }
            return;  // EAGAIN: another smtpd process took it; ECONNABORTED etc.: nothing to do
        }
        unmap_v4(ss);
        start_session(UniqueFd(fd), ss, l.kind);
    }
}

// The anvil_connect reqid is the session id, so the verdict and the later anvil_disconnect name
// exactly this connection.
void Server::start_session(UniqueFd fd, const sockaddr_storage& ss, ListenKind kind) {
    ClientInfo client;
    client.addr = ss;
    client.ip = numeric_ip(ss);
    client.ipv6 = ss.ss_family == AF_INET6;
    client.kind = kind;
    uint64_t id = next_session_++;
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {  // not an IP client: nothing to count
        open_session(id, std::move(fd), std::move(client));
        return;
    }
    master_->send(wire::encode(wire::AnvilConnect{client.ip, listen_kind_name(kind)}, id));
    waiting_[id] = Waiting{std::move(fd), std::move(client), now() + kAnvilWaitSeconds};
    if (!evtimer_pending(anvil_timer_.get(), nullptr)) {
        timeval tv{1, 0};
        event_add(anvil_timer_.get(), &tv);
    }
    if (connections() >= cfg_->smtpd_max_connections) pause_accepting(0);
}

void Server::open_session(uint64_t id, UniqueFd fd, ClientInfo client) {
    clients_[client.ip].sessions++;
    auto s = std::make_unique<Session>(*this, base_, cfg_, res_, id, std::move(fd), std::move(client));
    Session* raw = s.get();
    sessions_[id] = std::move(s);
    if (connections() >= cfg_->smtpd_max_connections) pause_accepting(0);
    raw->start();
}

// Written once without waiting: a client that does not read it loses nothing it could use.
void Server::refuse_client(UniqueFd fd, const ClientInfo& client, const std::string& why) {
    std::string msg = "421 4.7.0 " + cfg_->hostname + " Error: " + why + "\r\n";
    (void)!send(fd.get(), msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    LOG_INFO("event=reject client=%s code=421 enhanced=4.7.0 reason=\"%s\"", client.ip.c_str(), why.c_str());
    metrics::registry().add("mta_smtpd_rejects_total",
                            metrics::labels({{"stage", "connect"}, {"class", "4xx"}, {"enhanced", "4.7"}}));
}

void Server::on_anvil_verdict(ipc::Message& m) {
    wire::AnvilVerdict verdict;
    if (std::string err; !wire::decode(m, verdict, err)) malformed(Role::master, "bad anvil_verdict: " + err);
    auto it = waiting_.find(m.reqid);
    if (it == waiting_.end()) return;  // answered after we gave up waiting, or the client is gone
    Waiting w = std::move(it->second);
    waiting_.erase(it);
    auto st = ipc::AnvilStatus(verdict.status);
    if (st == ipc::AnvilStatus::allow) {
        ClientState& c = clients_[w.client.ip];
        c.auth_failures = verdict.auth_failures + c.auth_in_flight;
        admit(m.reqid, std::move(w.fd), std::move(w.client));
        return;
    }
    refuse_client(std::move(w.fd), w.client,
                  st == ipc::AnvilStatus::refuse_rate ? "too many connections from " + w.client.ip + ", try again later"
                                                      : "too many connections from " + w.client.ip);
    maybe_resume();
}

void Server::anvil_timer_cb(int, short, void* arg) {
    auto* self = static_cast<Server*>(arg);
    for (uint64_t id : overdue(self->waiting_, self->now(), kAnvilWaitSeconds)) {
        auto it = self->waiting_.find(id);
        Waiting w = std::move(it->second);
        self->waiting_.erase(it);
        LOG_WARN("event=anvil_timeout client=%s action=allow reason=\"no answer from mtad within %llds\"",
                 w.client.ip.c_str(), static_cast<long long>(kAnvilWaitSeconds));
        self->admit(id, std::move(w.fd), std::move(w.client));
    }
    if (self->waiting_.empty()) event_del(self->anvil_timer_.get());
}

// Stopping: connections still waiting for a verdict or DNSBL answers are told so and closed.
void Server::close_waiting() {
    std::string msg = "421 4.3.2 " + cfg_->hostname + " Service shutting down\r\n";
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& [id, w] : waiting) {
        (void)!send(w.fd.get(), msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        anvil_disconnect(id);  // mtad may have counted it already
    }
    auto dnsbl = std::move(dnsbl_waiting_);
    dnsbl_waiting_.clear();
    for (auto& [id, w] : dnsbl) {
        (void)!send(w.fd.get(), msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        anvil_disconnect(id);
    }
    event_del(anvil_timer_.get());
    event_del(dnsbl_timer_.get());
}

void Server::anvil_disconnect(uint64_t id) {
    if (master_ && master_->open()) master_->send(wire::encode(wire::AnvilDisconnect{}, id));
}

// smtpd_client_auth_failure_rate_limit: mtad counts; we add our own failures at once so that the
// next check in this process does not wait for the answer.
void Server::auth_failed(const ClientInfo& client) {
    if (cfg_->smtpd_client_auth_failure_rate_limit == 0 ||
        cfg_->exempt_from_client_limits(reinterpret_cast<const sockaddr*>(&client.addr)))
        return;
    ClientState& c = clients_[client.ip];
    c.auth_failures++;
    c.auth_in_flight++;
    master_->send(wire::encode(wire::AnvilAuthFail{client.ip}, next_reqid_++));
}

void Server::on_anvil_auth_count(ipc::Message& m) {
    wire::AnvilAuthCount count;
    if (std::string err; !wire::decode(m, count, err)) malformed(Role::master, "bad anvil_auth_count: " + err);
    auto it = clients_.find(count.client_addr);
    if (it == clients_.end()) return;  // every session of that client has ended
    ClientState& c = it->second;
    if (c.auth_in_flight > 0) c.auth_in_flight--;
    c.auth_failures = count.auth_failures + c.auth_in_flight;
}

bool Server::auth_blocked(const ClientInfo& client) const {
    uint64_t limit = cfg_->smtpd_client_auth_failure_rate_limit;
    if (limit == 0) return false;
    auto it = clients_.find(client.ip);
    return it != clients_.end() && it->second.auth_failures >= limit;
}

void Server::session_done(uint64_t session_id) {
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return;
    auto c = clients_.find(it->second->client().ip);
    if (c != clients_.end() && --c->second.sessions == 0) clients_.erase(c);
    anvil_disconnect(session_id);
    reaper_.bury(std::move(it->second));
    sessions_.erase(it);
    maybe_resume();
}

void Server::maybe_resume() {
    if (!accepting_ && !stopping_ && connections() < cfg_->smtpd_max_connections &&
        !evtimer_pending(resume_timer_.get(), nullptr))
        resume_accepting();
}

// seconds == 0: until a session ends; otherwise (EMFILE) retry after a pause.
void Server::pause_accepting(int seconds) {
    accepting_ = false;
    for (auto& l : listeners_) event_del(l->ev.get());
    if (seconds > 0) {
        timeval tv{seconds, 0};
        evtimer_add(resume_timer_.get(), &tv);
    }
}

void Server::resume_accepting() {
    if (stopping_) return;
    accepting_ = true;
    for (auto& l : listeners_) event_add(l->ev.get(), nullptr);
}

void Server::timer_cb(int, short, void* arg) {
    auto* self = static_cast<Server*>(arg);
    if (self->stopping_) return;
    if (self->connections() < self->cfg_->smtpd_max_connections) self->resume_accepting();
    else self->accepting_ = false;  // a finishing session will resume
}

}  // namespace mta::smtpd
