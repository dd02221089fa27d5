// Control socket connections, served from mtad's event loop. Anyone on the host may connect, so a
// client is untrusted input to a root process: it is read and written without blocking, with its own
// buffers, a request size cap and a deadline, and the number of clients is capped (with room kept for
// root). A slow or hostile client costs mtad a few hundred bytes and one timer, never a wait.
#include "master/control_server.h"

#include <cerrno>
#include <cstring>
#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

namespace mta::master {
namespace {

constexpr int kAcceptsPerWakeup = 16;  // then let the rest of the loop run
constexpr time_t kAcceptPauseSeconds = 1;

}  // namespace

struct ControlServer::Client {
    ControlServer* server = nullptr;
    ControlPeer peer;
    UniqueFd fd;             // declared before the events: they are freed first
    std::string in;          // the request line so far
    std::string out;         // reply bytes not yet written, from out_off on
    std::size_t out_off = 0;
    bool requested = false;  // the command line has arrived and gone to the handler
    bool answered = false;   // the last reply chunk is queued
    EventPtr read_ev, write_ev, timer;

    std::size_t pending() const { return out.size() - out_off; }
};


ControlServer::ControlServer(event_base* base, UniqueFd listen_fd, ControlLimits limits, Handler handler, Gone gone,
                             Drained drained)
    : base_(base), listen_fd_(std::move(listen_fd)), limits_(limits), handler_(std::move(handler)), gone_(std::move(gone)),
      drained_(std::move(drained)) {
    accept_ev_.reset(event_new(base_, listen_fd_.get(), EV_READ | EV_PERSIST, &ControlServer::on_accept, this));
    resume_ev_.reset(evtimer_new(base_, &ControlServer::on_resume, this));
    event_add(accept_ev_.get(), nullptr);
}

ControlServer::~ControlServer() { clients_.clear(); }

void ControlServer::on_accept(int, short, void* arg) { static_cast<ControlServer*>(arg)->accept_clients(); }

void ControlServer::on_resume(int, short, void* arg) {
    auto* s = static_cast<ControlServer*>(arg);
    event_add(s->accept_ev_.get(), nullptr);
}

void ControlServer::accept_clients() {
    for (int i = 0; i < kAcceptsPerWakeup; i++) {
        UniqueFd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            // Out of descriptors or memory: the socket would stay readable and spin the loop.
            LOG_WARN("event=control_accept_paused reason=\"%s\"", strerror(errno));
            event_del(accept_ev_.get());
            struct timeval tv = {kAcceptPauseSeconds, 0};
            evtimer_add(resume_ev_.get(), &tv);
            return;
        }
        struct ucred cred = {};
        socklen_t len = sizeof cred;
        if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
            LOG_WARN("event=control_refused reason=\"SO_PEERCRED: %s\"", strerror(errno));
            continue;
        }
        bool privileged = cred.uid == 0 || cred.uid == geteuid();
        // Root keeps its own slots, so that users filling the socket cannot lock the admin out.
        if (clients_.size() >= limits_.max_clients || (!privileged && unprivileged_ >= limits_.max_unprivileged)) {
            LOG_WARN("event=control_refused uid=%u reason=\"too many control clients\" clients=%zu",
                     unsigned(cred.uid), clients_.size());
            continue;
        }
        auto c = std::make_unique<Client>();
        c->server = this;
        c->peer = ControlPeer{++next_id_, cred.uid, privileged};
        int cfd = fd.get();
        c->fd = std::move(fd);
        c->read_ev.reset(event_new(base_, cfd, EV_READ | EV_PERSIST, &ControlServer::on_client_read, c.get()));
        c->write_ev.reset(event_new(base_, cfd, EV_WRITE | EV_PERSIST, &ControlServer::on_client_write, c.get()));
        c->timer.reset(evtimer_new(base_, &ControlServer::on_client_timer, c.get()));
        event_add(c->read_ev.get(), nullptr);
        arm_deadline(*c, limits_.request_seconds);
        if (!privileged) unprivileged_++;
        clients_[c->peer.id] = std::move(c);
    }
}

void ControlServer::arm_deadline(Client& c, unsigned seconds) {
    struct timeval tv = {time_t(seconds), 0};
    evtimer_add(c.timer.get(), &tv);
}

void ControlServer::on_client_read(int, short, void* arg) {
    auto* c = static_cast<Client*>(arg);
    c->server->read_request(*c);
}

void ControlServer::on_client_write(int, short, void* arg) {
    auto* c = static_cast<Client*>(arg);
    c->server->flush(*c);
}

void ControlServer::on_client_timer(int, short, void* arg) {
    auto* c = static_cast<Client*>(arg);
    const char* reason = !c->requested ? "no complete request in time"
                         : c->pending() ? "reply not read in time"
                                        : "no answer to relay in time";
    c->server->drop(*c, reason);
}

// Reads what is there, never more than the cap; the line goes to the handler once its newline came.
void ControlServer::read_request(Client& c) {
    char buf[512];
    std::size_t room = limits_.max_request - c.in.size();
    ssize_t n = recv(c.fd.get(), buf, std::min(room, sizeof buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {  // gone before a complete line: nothing to answer
        close(c.peer.id);
        return;
    }
    c.in.append(buf, std::size_t(n));
    auto nl = c.in.find('\n');
    if (nl == std::string::npos) {
        if (c.in.size() >= limits_.max_request) drop(c, "request too long");
        return;
    }
    std::string line = c.in.substr(0, nl);
    std::string().swap(c.in);
    c.requested = true;
    event_del(c.read_ev.get());  // one command per connection; anything after the line is ignored
    arm_deadline(c, limits_.reply_seconds);
    ControlPeer peer = c.peer;
    handler_(peer, line);  // may answer and close c at once
}

bool ControlServer::reply(uint64_t id, std::string_view text, bool last) {
    auto it = clients_.find(id);
    if (it == clients_.end() || it->second->answered) return false;
    Client& c = *it->second;
    // Waiting on a role counts as progress when its answer arrives; a client that does not read
    // extends nothing (flush re-arms the deadline only when bytes leave).
    if (!c.pending() && !text.empty()) arm_deadline(c, limits_.reply_seconds);
    if (c.out_off > 0 && c.out_off >= c.out.size() / 2) {
        c.out.erase(0, c.out_off);
        c.out_off = 0;
    }
    c.out.append(text);
    c.answered = last;
    return flush(c);
}

// Writes what the socket takes now, the rest on EV_WRITE. False if the client went away; in any case
// `c` may be gone when this returns.
bool ControlServer::flush(Client& c) {
    bool progressed = false;
    while (c.pending()) {
        ssize_t n = send(c.fd.get(), c.out.data() + c.out_off, c.pending(), MSG_NOSIGNAL);
        if (n > 0) {
            c.out_off += std::size_t(n);
            progressed = true;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        close(c.peer.id);  // the tool went away
        return false;
    }
    if (progressed) arm_deadline(c, limits_.reply_seconds);
    if (c.pending()) {
        event_add(c.write_ev.get(), nullptr);
        return true;
    }
    std::string().swap(c.out);
    c.out_off = 0;
    event_del(c.write_ev.get());
    if (c.answered) close(c.peer.id);
    else if (progressed && drained_) drained_(c.peer.id);  // last: the handler may queue more for c
    return true;
}

void ControlServer::drop(Client& c, const char* reason) {
    LOG_WARN("event=control_drop uid=%u reason=\"%s\"", unsigned(c.peer.uid), reason);
    close(c.peer.id);
}

void ControlServer::close(uint64_t id) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;
    std::unique_ptr<Client> c = std::move(it->second);
    clients_.erase(it);
    if (!c->peer.privileged) unprivileged_--;
    if (c->requested && !c->answered && gone_) gone_(id);
}

}  // namespace mta::master
