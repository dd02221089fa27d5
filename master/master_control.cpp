// The control socket: one command line per connection from mtactl, a text answer, then close.
// Peers are identified with SO_PEERCRED; only root (or mtad's own uid) may change anything.
#include <cerrno>
#include <cstring>
#include <event2/event.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
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
    if (rc != 0 || listen(control_fd_.get(), 16) != 0) {
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
                 c->pid > 0 ? (c->stopping ? "stopping" : "running") : "restarting", user.c_str(),
                 c->pid > 0 ? (long long)(now - c->started) : 0LL, c->restarts);
        out += line;
    }
    return out;
}

}  // namespace mta::master
