// The control socket: one command line per connection from mtactl, a text answer, then close.
// Peers are identified with SO_PEERCRED; only root (or mtad's own uid) may change anything.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <event2/event.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/wire/wire.h"
#include "master/master.h"

namespace mta::master {

bool Master::open_control(std::string& err) {
    const std::string& path = cfg_.control_socket;
    struct sockaddr_un sa = {};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) { err = "control_socket path too long"; return false; }
    memcpy(sa.sun_path, path.c_str(), path.size());
    control_fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    {
        // A live socket means another mtad owns this spool: refuse rather than steal it.
        UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (connect(probe.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
            err = "another mtad is already running (" + path + ")";
            return false;
        }
    }
    unlink(path.c_str());
    mode_t old = umask(077);
    int rc = bind(control_fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    umask(old);
    // Anyone may connect: every changing command is checked against SO_PEERCRED here, and the queue
    // shows an unprivileged user only the mail that user submitted.
    if (rc != 0 || chmod(path.c_str(), 0666) != 0 || listen(control_fd_.get(), 16) != 0) {
        err = "control socket " + path + ": " + strerror(errno);
        return false;
    }
    events_.emplace_back(event_new(base_, control_fd_.get(), EV_READ | EV_PERSIST, &Master::on_control, this));
    event_add(events_.back().get(), nullptr);
    return true;
}

void Master::on_control(int, short, void* arg) { static_cast<Master*>(arg)->accept_control(); }

void Master::accept_control() {
    UniqueFd fd(accept4(control_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) return;
    struct ucred cred = {};
    socklen_t len = sizeof cred;
    bool privileged = getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
                      (cred.uid == 0 || cred.uid == geteuid());
    // mtactl writes its command at once; a client that does not is dropped after a short wait.
    struct timeval tv = {2, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char buf[512];
    std::size_t got = 0;
    while (got < sizeof buf) {
        ssize_t n = read(fd.get(), buf + got, sizeof buf - got);
        if (n <= 0) break;
        got += std::size_t(n);
        if (memchr(buf, '\n', got)) break;
    }
    std::string line(buf, got);
    auto nl = line.find('\n');
    if (nl == std::string::npos) return;  // no complete command: drop the client
    line.resize(nl);
    std::string reply;
    std::string cmd = line.substr(0, line.find(' '));
    std::string arg = line.size() > cmd.size() ? line.substr(cmd.size() + 1) : "";
    if (cmd == "status") {
        reply = status_text();
    } else if (cmd == "queue" || cmd == "resolve") {
        // Forwarded to the role that owns the data; the answer is relayed when it arrives.
        std::string role = cmd == "queue" ? "queue" : "resolver";
        Child* c = live_child(role);
        if (!c) {
            reply = "error: " + role + " process is not running\n";
        } else {
            uint64_t id = ++admin_seq_;
            ipc::Message m;
            if (cmd == "queue") {
                m = wire::encode(wire::AdminRequest{arg, cred.uid, privileged}, id);
            } else {
                // "resolve NAME QTYPE": the resolver validates the name; the qtype must be a number.
                auto sp = arg.find(' ');
                std::string name = arg.substr(0, sp), qt = sp == std::string::npos ? "" : arg.substr(sp + 1);
                // A PTR MX TXT AAAA TLSA, and 65280: the domain's MTA-STS policy (common/mta_sts.h)
                static const char* kTypes[] = {"1", "12", "15", "16", "28", "52", "65280"};
                bool known = false;
                for (auto* t : kTypes) known = known || qt == t;
                if (name.empty() || !known) {
                    reply = "error: usage: resolve NAME QTYPE (1, 12, 15, 16, 28, 52 or 65280)\n";
                    ssize_t w = write(fd.get(), reply.data(), reply.size());
                    (void)w;
                    return;
                }
                m = wire::encode(wire::ResolveRequest{name, std::stoull(qt)}, id);
            }
            LOG_INFO("event=control uid=%u command=%s", unsigned(cred.uid), log::safe(cmd).c_str());
            c->link->send(std::move(m));
            pending_admin_[id] = PendingAdmin{std::move(fd), role, cmd};
            return;
        }
    } else if (cmd == "reload" || cmd == "stop" || cmd == "loglevel") {
        if (!privileged) {
            reply = "error: permission denied\n";
        } else if (cmd == "reload") {
            std::string msg;
            reply = (reload(msg) ? "ok: " : "error: ") + msg + "\n";
        } else if (cmd == "stop") {
            reply = "ok: stopping\n";
            begin_stop();
        } else {
            log::Level l;
            if (!log::parse_level(arg, l)) {
                reply = "error: level must be debug, info, warn or error\n";
            } else {
                set_log_level(arg);
                reply = "ok: log level " + arg + "\n";
            }
        }
    } else {
        reply = "error: unknown command \"" + log::safe(cmd) + "\"\n";
    }
    LOG_INFO("event=control uid=%u command=%s", unsigned(cred.uid), log::safe(cmd).c_str());
    ssize_t w = write(fd.get(), reply.data(), reply.size());
    (void)w;
}

Child* Master::live_child(const std::string& role) {
    for (auto& c : children_)
        if (c->role == role && c->pid > 0 && c->link && c->link->open() && !c->stopping) return c.get();
    return nullptr;
}

namespace {
void write_all(int fd, const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
        ssize_t n = write(fd, s.data() + off, s.size() - off);
        if (n <= 0) return;  // the tool went away or stalled past SO_SNDTIMEO
        off += std::size_t(n);
    }
}

std::string format_resolve(const ipc::Message& m) {
    static const char* sec[] = {"insecure", "secure", "bogus"};
    wire::ResolveReply r;
    std::string err;
    if (!wire::decode(m, r, err)) return "error: malformed answer from the resolver: " + err + "\n";
    std::string out = "rcode=" + std::to_string(r.rcode) + " dnssec=" + sec[r.dnssec];
    if (!r.text.empty()) out += " text=\"" + log::safe(r.text) + "\"";
    out += "\n";
    for (auto& rec : r.records) out += log::safe(rec) + "\n";
    return out;
}
}  // namespace

// An answer from a role for an admin tool: the queue may send it in several chunks.
void Master::relay_reply(ipc::Message& m) {
    auto it = pending_admin_.find(m.reqid);
    if (it == pending_admin_.end()) return;  // the tool gave up, or the id is stale
    bool more = false;
    if (m.type == ipc::Type::admin_reply) {
        wire::AdminReply r;
        std::string err;
        if (!wire::decode(m, r, err)) r.text = "error: malformed answer from the queue: " + err + "\n";
        write_all(it->second.fd.get(), r.text);
        more = r.more;
    } else {
        write_all(it->second.fd.get(), format_resolve(m));
    }
    if (!more) pending_admin_.erase(it);
}

void Master::fail_pending(const std::string& role) {
    for (auto it = pending_admin_.begin(); it != pending_admin_.end();) {
        if (it->second.role != role) { ++it; continue; }
        write_all(it->second.fd.get(), "error: " + role + " process exited before answering\n");
        it = pending_admin_.erase(it);
    }
}

std::string Master::status_text() const {
    std::string out;
    time_t now = time(nullptr);
    for (auto& c : children_) {
        char line[256];
        std::string user = "-";
        if (c->pid > 0) {
            // Report the uid the process really runs under, read back from the kernel.
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/status", int(c->pid));
            if (FILE* f = fopen(path, "r")) {
                char l[256];
                while (fgets(l, sizeof l, f))
                    if (strncmp(l, "Uid:", 4) == 0) { user = std::to_string(strtoul(l + 4, nullptr, 10)); break; }
                fclose(f);
            }
        }
        snprintf(line, sizeof line, "role=%s instance=%llu pid=%d state=%s uid=%s uptime=%llds restarts=%u\n",
                 c->role.c_str(), (unsigned long long)c->instance, int(c->pid),
                 c->pid <= 0 ? "restarting" : c->stopping ? "stopping" : c->ready ? "running" : "starting", user.c_str(),
                 c->pid > 0 ? (long long)(now - c->started) : 0LL, c->restarts);
        out += line;
    }
    return out + anvil_status_line();
}

}  // namespace mta::master
