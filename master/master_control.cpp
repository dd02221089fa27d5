// The control socket's commands: one command line per connection from mtactl, a text answer, then
// close. Peers are identified with SO_PEERCRED; only root (or mtad's own uid) may change anything.
// The connections themselves (non-blocking I/O, deadlines, caps) live in control_server.cpp.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

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
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
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
    int rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    umask(old);
    // Anyone may connect: every changing command is checked against SO_PEERCRED here, and the queue
    // shows an unprivileged user only the mail that user submitted.
    if (rc != 0 || chmod(path.c_str(), 0666) != 0 || listen(fd.get(), 16) != 0) {
        err = "control socket " + path + ": " + strerror(errno);
        return false;
    }
    control_ = std::make_unique<ControlServer>(
        base_, std::move(fd), ControlLimits{},
        [this](const ControlPeer& peer, const std::string& line) { on_control_request(peer, line); },
        [this](uint64_t client) { forget_pending(client); },
        [this](uint64_t client) { ask_more(client); });
    return true;
}

// One complete command line from a control client (control_server.cpp read it without blocking).
void Master::on_control_request(const ControlPeer& peer, const std::string& line) {
    std::string reply;
    std::string cmd = line.substr(0, line.find(' '));
    std::string arg = line.size() > cmd.size() ? line.substr(cmd.size() + 1) : "";
    if (cmd == "status") {
        reply = status_text();
    } else if (cmd == "stats" && peer.privileged && (arg.empty() || arg == "json")) {
        // Destinations and counts are the admin's, as the queue listing is: root or mtad's uid only.
        LOG_INFO("event=control uid=%u command=stats", unsigned(peer.uid));
        start_gather(arg.empty() ? StatsFormat::text : StatsFormat::json, peer.id);
        return;
    } else if (cmd == "stats") {
        reply = peer.privileged ? "error: usage: stats [json]\n" : "error: permission denied\n";
    } else if (cmd == "queue" || cmd == "resolve") {
        // Forwarded to the role that owns the data; the answer is relayed when it arrives.
        Role role = cmd == "queue" ? Role::queue : Role::resolver;
        Child* c = live_child(role);
        if (!c) {
            reply = std::string("error: ") + role_name(role) + " process is not running\n";
        } else {
            uint64_t id = ++admin_seq_;
            ipc::Message m;
            if (cmd == "queue") {
                m = wire::encode(wire::AdminRequest{arg, uint64_t(peer.uid), peer.privileged}, id);
            } else {
                // "resolve NAME QTYPE": the resolver validates the name; the qtype must be a number.
                auto sp = arg.find(' ');
                std::string name = arg.substr(0, sp), qt = sp == std::string::npos ? "" : arg.substr(sp + 1);
                // A PTR MX TXT AAAA TLSA, and 65280: the domain's MTA-STS policy (common/mta_sts.h)
                static const char* kTypes[] = {"1", "12", "15", "16", "28", "52", "65280"};
                bool known = false;
                for (auto* t : kTypes) known = known || qt == t;
                if (name.empty() || !known) {
                    control_->reply(peer.id, "error: usage: resolve NAME QTYPE (1, 12, 15, 16, 28, 52 or 65280)\n", true);
                    return;
                }
                m = wire::encode(wire::ResolveRequest{name, std::stoull(qt)}, id);
            }
            LOG_INFO("event=control uid=%u command=%s", unsigned(peer.uid), log::safe(cmd).c_str());
            c->link->send(std::move(m));
            pending_admin_[id] = PendingAdmin{peer.id, role, cmd};
            return;
        }
    } else if (cmd == "reload" || cmd == "stop" || cmd == "loglevel") {
        if (!peer.privileged) {
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
    LOG_INFO("event=control uid=%u command=%s", unsigned(peer.uid), log::safe(cmd).c_str());
    control_->reply(peer.id, reply, true);
}

Child* Master::live_child(Role role) {
    for (auto& c : children_)
        if (c->role == role && c->pid > 0 && c->link && c->link->open() && !c->stopping) return c.get();
    return nullptr;
}

namespace {
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

// An answer from a role for an admin tool: the queue may send it in several chunks. They are queued on
// the tool's connection and written as it reads; a tool that went away only loses its answer.
void Master::relay_reply(ipc::Message& m) {
    auto it = pending_admin_.find(m.reqid);
    if (it == pending_admin_.end()) return;  // the tool gave up, or the id is stale
    uint64_t client = it->second.client;
    bool more = false;
    std::string text;
    if (m.type == ipc::Type::admin_reply) {
        wire::AdminReply r;
        std::string err;
        if (!wire::decode(m, r, err)) r.text = "error: malformed answer from the queue: " + err + "\n";
        text = r.text;
        more = r.more;
    } else {
        text = format_resolve(m);
    }
    if (!more) pending_admin_.erase(it);
    else it->second.streaming = true;  // before reply(): a client that takes it all at once asks for more there
    if (!control_->reply(client, text, !more)) forget_pending(client);
}

// The tool has read everything relayed so far: a queue that streams its answer (mtaqueue list) sends
// the next chunk only now, so neither mtad nor the queue holds more than a chunk for a slow reader.
void Master::ask_more(uint64_t client) {
    for (auto& [reqid, p] : pending_admin_) {
        if (p.client != client || !p.streaming) continue;
        p.streaming = false;
        if (Child* c = live_child(p.role); c && p.role == Role::queue) c->link->send(wire::encode(wire::AdminMore{true}, reqid));
    }
}

void Master::fail_pending(Role role) {
    std::vector<uint64_t> clients;
    for (auto it = pending_admin_.begin(); it != pending_admin_.end();) {
        if (it->second.role != role) { ++it; continue; }
        clients.push_back(it->second.client);
        it = pending_admin_.erase(it);
    }
    for (uint64_t client : clients) control_->reply(client, std::string("error: ") + role_name(role) + " process exited before answering\n", true);
}

// The tool's connection closed or was dropped before its answer came: a late answer is ignored.
void Master::forget_pending(uint64_t client) {
    for (auto it = pending_admin_.begin(); it != pending_admin_.end();) {
        if (it->second.client != client) {
            ++it;
            continue;
        }
        // A queue streaming an answer drops what it has not sent yet.
        if (Child* c = live_child(it->second.role); c && it->second.role == Role::queue)
            c->link->send(wire::encode(wire::AdminMore{false}, it->first));
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
                 role_name(c->role), (unsigned long long)c->instance, int(c->pid),
                 c->pid <= 0 ? "restarting" : c->stopping ? "stopping" : c->ready ? "running" : "starting", user.c_str(),
                 c->pid > 0 ? (long long)(now - c->started) : 0LL, c->restarts);
        out += line;
    }
    return out + anvil_status_line();
}

}  // namespace mta::master
