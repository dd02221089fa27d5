// mtad process supervision: spawning roles with their control link on fd 3, wiring peer socketpairs,
// restarting crashed roles with backoff, reload and the two-phase graceful stop.
#include "master/master.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <event2/event.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/daemon.h"
#include "common/file_util.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/spool_format.h"
#include "common/wire/wire.h"
#include "master/listener_checks.h"

namespace mta::master {
namespace {

// Which roles talk to which (DESIGN.md §2): each pair gets its own socketpair per instance.
const std::pair<Role, Role> kEdges[] = {
    {Role::smtpd, Role::queue}, {Role::queue, Role::smtp}, {Role::queue, Role::local}, {Role::smtp, Role::resolver},
    {Role::smtpd, Role::msgauth}, {Role::queue, Role::msgauth}, {Role::msgauth, Role::resolver},
    {Role::smtpd, Role::resolver}};

constexpr unsigned kMaxBackoff = 60;
constexpr int kStopGraceSeconds = 12;

}  // namespace

Master::Master(std::string config_path, bool explicit_path, Config cfg, bool foreground)
    : config_path_(std::move(config_path)), explicit_path_(explicit_path), cfg_(std::move(cfg)), foreground_(foreground) {
    base_owner_.reset(event_base_new());
    base_ = base_owner_.get();
}

// Children (their links and timers) and our events go before the base they live on.
Master::~Master() {
    children_.clear();
    control_.reset();
    events_.clear();
}

std::string Master::program_path(const std::string& program) const {
    if (!cfg_.libexec_dir.empty()) return cfg_.libexec_dir + "/" + program;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return program;
    std::string dir(self, std::size_t(n));
    return dir.substr(0, dir.rfind('/')) + "/" + program;
}

// check_queue_format in a child process: LMDB trusts the file it maps, and a damaged one must not take
// mtad down. Only the child's clear "newer format" verdict stops the start; a crash is mta-queue's to
// find and report.
bool Master::queue_format_ok(std::string& err) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return true;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        std::string why;
        bool ok = check_queue_format(queue_dir(cfg_) + "/db", why);
        if (!ok && ::write(fds[1], why.data(), why.size()) < 0) _exit(2);
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    std::string why;
    char buf[512];
    for (ssize_t n; pid > 0 && (n = read(fds[0], buf, sizeof buf)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        why.append(buf, std::size_t(n));
    }
    close(fds[0]);
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1 && !why.empty()) {
        err = why;
        return false;
    }
    return true;
}

int Master::run() {
    std::string err;
    if (!prepare_filesystem(err) || !queue_format_ok(err) || !open_listeners(err) ||
        !open_control(err)) {
        LOG_ERROR("event=startup_failed reason=\"%s\"", log::safe(err).c_str());
        if (!foreground_) fprintf(stderr, "mtad: %s\n", err.c_str());
        return 1;
    }
    UniqueFd maillog;
    if (!foreground_ && !cfg_.maillog_file.empty()) {
        maillog.reset(::open(cfg_.maillog_file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640));
        if (!maillog) {
            err = "maillog_file " + cfg_.maillog_file + ": " + strerror(errno);
            LOG_ERROR("event=startup_failed reason=\"%s\"", log::safe(err).c_str());
            fprintf(stderr, "mtad: %s\n", err.c_str());
            return 1;
        }
    }
    // Detach only now, so that start-up errors above still reach the terminal and the exit status.
    if (!foreground_) {
        if (::daemon(1, 0) != 0) {
            LOG_ERROR("event=startup_failed reason=\"daemon: %s\"", strerror(errno));
            return 1;
        }
        event_reinit(base_);
        // maillog_file: fd 2 of mtad and of every role it starts (they log to stderr, one write a line,
        // appended, so lines of different processes stay whole).
        if (maillog) dup2(maillog.get(), 2);
    }
    for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) {
        events_.emplace_back(evsignal_new(base_, sig, &Master::on_signal, this));
        event_add(events_.back().get(), nullptr);
    }
    signal(SIGPIPE, SIG_IGN);
    // Tables first: mta-queue opens its copies as soon as it starts.
    tables_.configure(cfg_);
    tables_.sync();
    events_.emplace_back(event_new(base_, -1, EV_PERSIST, &TablePublisher::on_timer, &tables_));
    struct timeval table_tv = {TablePublisher::kCheckSeconds, 0};
    event_add(events_.back().get(), &table_tv);
    auto add_role = [&](Role role, uint64_t count) {
        for (uint64_t i = 0; i < count; i++) {
            auto c = std::make_unique<Child>();
            c->role = role;
            c->instance = i;
            children_.push_back(std::move(c));
        }
    };
    // Start order: the queue before anything that feeds it, smtpd last so mail is accepted only once
    // the rest of the chain can take it.
    add_role(Role::resolver, 1);
    add_role(Role::queue, 1);
    add_role(Role::local, 1);
    // Always, like Postfix's cleanup: verification is on by default, and a role that exists only with
    // some settings would make a reload that changes them a restart.
    add_role(Role::msgauth, 1);
    add_role(Role::smtp, cfg_.smtp_processes);
    add_role(Role::smtpd, cfg_.smtpd_processes);
    // Only with metrics_listen (which changes on restart, like every listener).
    if (!cfg_.metrics_listen.empty()) {
        add_role(Role::metrics, 1);
        events_.emplace_back(event_new(base_, -1, EV_PERSIST, &Master::on_stats_refresh, this));
        struct timeval refresh_tv = {kStatsRefreshSeconds, 0};
        event_add(events_.back().get(), &refresh_tv);
    }
    for (auto& c : children_) spawn(*c);
    LOG_INFO("event=started config=%s hostname=%s", log::safe(cfg_.source).c_str(), cfg_.hostname.c_str());
    event_base_dispatch(base_);
    if (!cfg_.control_socket.empty()) unlink(cfg_.control_socket.c_str());
    LOG_INFO("event=stopped");
    return exit_status_;
}

void Master::spawn(Child& c) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        LOG_ERROR("event=spawn_failed role=%s reason=\"socketpair: %s\"", role_name(c.role), strerror(errno));
        schedule_restart(c);
        return;
    }
    UniqueFd mine(sv[0]), theirs(sv[1]);
    std::string path = program_path(role_program(c.role));
    pid_t pid = fork();
    if (pid < 0) {
        LOG_ERROR("event=spawn_failed role=%s reason=\"fork: %s\"", role_name(c.role), strerror(errno));
        schedule_restart(c);
        return;
    }
    if (pid == 0) {
        // Child: fd 3 becomes the control link; everything else is close-on-exec already.
        if (theirs.get() == daemon::kMasterFd) fcntl(theirs.get(), F_SETFD, 0);
        else if (dup2(theirs.get(), daemon::kMasterFd) < 0) _exit(126);
        // The terminal's Ctrl-C and hangup are for mtad alone: it stops the children in order.
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        // -d: log to stderr (the terminal, or maillog_file on fd 2).
        const char* argv[] = {role_program(c.role), foreground_ || !cfg_.maillog_file.empty() ? "-d" : nullptr, nullptr};
        execv(path.c_str(), const_cast<char* const*>(argv));
        fprintf(stderr, "mtad: exec %s: %s\n", path.c_str(), strerror(errno));
        _exit(127);
    }
    c.pid = pid;
    c.started = time(nullptr);
    c.stopping = false;
    Child* cp = &c;
    c.link = std::make_unique<ipc::Link>(
        base_, std::move(mine), Role::master, std::string(role_name(c.role)) + "#" + std::to_string(c.instance),
        [this, cp](ipc::Message& m) { on_child_message(*cp, m); },
        [this, cp](bool malformed, const std::string&) {
            if (malformed) kill_child(*cp, "malformed control message");
        });
    c.ready = false;
    // A role says HELLO on its master link only after its privilege drop: from then on it serves.
    c.link->set_hello_handler([this, cp](const std::string& role) { on_child_ready(*cp, role); });
    c.link->send(wire::encode(wire::Config{cfg_.text, cfg_.source, false, "", ""}));
    if (c.role == Role::smtpd || c.role == Role::metrics) {
        for (auto& l : listeners_) {
            if ((l.kind == "metrics") != (c.role == Role::metrics)) continue;
            wire::Listen lm{l.kind, UniqueFd(dup(l.fd.get()))};
            c.link->send(wire::encode(lm));
        }
    }
    LOG_INFO("event=spawned role=%s instance=%llu pid=%d", role_name(c.role), (unsigned long long)c.instance, int(pid));
    connect_peers(c);
}

void Master::connect_peers(Child& c) {
    for (auto& [a, b] : kEdges) {
        Role other = a;
        if (c.role == a) other = b;
        else if (c.role != b) continue;
        for (auto& o : children_) {
            if (o->role != other || o->pid < 0 || !o->link || !o->link->open() || o->stopping) continue;
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
                LOG_ERROR("event=peer_failed reason=\"%s\"", strerror(errno));
                continue;
            }
            wire::Peer to_c{role_name(o->role), uint64_t(o->instance), UniqueFd(sv[0])};
            wire::Peer to_o{role_name(c.role), uint64_t(c.instance), UniqueFd(sv[1])};
            c.link->send(wire::encode(to_c));
            o->link->send(wire::encode(to_o));
        }
    }
}

void Master::on_child_message(Child& c, ipc::Message& m) {
    // Roles tell the master nothing but answers relayed for admin tools and smtpd's anvil questions;
    // anything else is a protocol violation by a less privileged process.
    if ((m.type == ipc::Type::admin_reply && c.role == Role::queue) ||
        (m.type == ipc::Type::resolve_reply && c.role == Role::resolver)) {
        relay_reply(m);
        return;
    }
    if (m.type >= ipc::Type::anvil_connect && m.type <= ipc::Type::anvil_auth_count && on_anvil_message(c, m)) return;
    if (m.type == ipc::Type::milter_connect && on_milter_connect(c, m)) return;
    if ((m.type == ipc::Type::stats_reply || (m.type == ipc::Type::stats_request && c.role == Role::metrics)) &&
        on_stats_message(c, m))
        return;
    LOG_ERROR("event=unexpected_message role=%s type=%s", role_name(c.role), ipc::type_name(m.type));
    kill_child(c, "unexpected control message");
}

void Master::on_child_ready(Child& c, const std::string& role) {
    if (parse_role(role) != c.role) {
        kill_child(c, "hello from the wrong role");
        return;
    }
    c.ready = true;
    LOG_INFO("event=ready role=%s instance=%llu pid=%d", role_name(c.role), (unsigned long long)c.instance, int(c.pid));
    for (auto& o : children_)
        if (!o->ready) return;
    if (!announced_ready_) LOG_INFO("event=all_ready roles=%zu", children_.size());
    announced_ready_ = true;
}

void Master::kill_child(Child& c, const char* why) {
    if (c.pid > 0) {
        LOG_ERROR("event=kill_child role=%s pid=%d reason=\"%s\"", role_name(c.role), int(c.pid), why);
        kill(c.pid, SIGKILL);
    }
}

void Master::on_child_exit(pid_t pid, int status) {
    for (auto& cp : children_) {
        Child& c = *cp;
        if (c.pid != pid) continue;
        anvil_.drop_link(uint64_t(pid));  // its connections are gone with it
        c.pid = -1;
        c.ready = false;
        c.link.reset();
        fail_pending(c.role);
        stats_child_gone(c);
        if (WIFSIGNALED(status))
            LOG_WARN("event=child_exit role=%s instance=%llu pid=%d signal=%d", role_name(c.role),
                     (unsigned long long)c.instance, int(pid), WTERMSIG(status));
        else
            LOG_INFO("event=child_exit role=%s instance=%llu pid=%d status=%d", role_name(c.role),
                     (unsigned long long)c.instance, int(pid), WEXITSTATUS(status));
#ifdef MTA_FAULT
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) fault::disarm();  // the restart recovers
#endif
        if (stopping_) {
            check_stopped();
        } else {
            if (time(nullptr) - c.started > 60) c.backoff = 1;  // it ran fine for a while: not a crash loop
            // A clean exit that nobody asked for is a role recycling itself (smtpd after a table change):
            // its replacement starts at once, without growing the crash back-off.
            bool recycled = WIFEXITED(status) && WEXITSTATUS(status) == 0 && time(nullptr) - c.started >= 1;
            schedule_restart(c, recycled);
        }
        return;
    }
}

void Master::schedule_restart(Child& c, bool now) {
    if (stopping_) return;
    if (!c.restart_timer) c.restart_timer.reset(evtimer_new(base_, &Master::on_restart_timer, this));
    unsigned delay = now ? 0 : c.backoff;
    struct timeval tv = {time_t(delay), 0};
    LOG_INFO("event=restart_scheduled role=%s instance=%llu in=%us", role_name(c.role), (unsigned long long)c.instance, delay);
    if (!now) c.backoff = std::min(c.backoff * 2, kMaxBackoff);
    c.restarts++;
    evtimer_add(c.restart_timer.get(), &tv);
}

void Master::on_restart_timer(int, short, void* arg) {
    auto* m = static_cast<Master*>(arg);
    if (m->stopping_) return;
    for (auto& c : m->children_)
        if (c->pid < 0 && c->restart_timer && !evtimer_pending(c->restart_timer.get(), nullptr)) m->spawn(*c);
}

void Master::on_signal(int sig, short, void* arg) {
    auto* m = static_cast<Master*>(arg);
    if (sig == SIGCHLD) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) m->on_child_exit(pid, status);
    } else if (sig == SIGHUP) {
        std::string msg;
        m->reload(msg);
    } else {
        LOG_INFO("event=stop_requested signal=%d", sig);
        m->begin_stop();
    }
}

bool Master::reload(std::string& msg) {
    Config fresh;
    std::vector<ConfigError> errors;
    if (!load_config(config_path_, !explicit_path_, fresh, errors)) {
        for (auto& e : errors) LOG_ERROR("event=reload_failed error=\"%s\"", log::safe(e.str()).c_str());
        msg = "reload refused:";
        for (auto& e : errors) msg += "\n" + e.str();
        return false;
    }
    absolutize_paths(fresh);
    auto problems = check_listeners(fresh);
    check_dkim_keys(fresh, problems.errors);
    if (!problems.errors.empty()) {
        msg = "reload refused:";
        for (auto& e : problems.errors) {
            LOG_ERROR("event=reload_failed error=\"%s\"", log::safe(e.str()).c_str());
            msg += "\n" + e.str();
        }
        return false;
    }
    for (auto& w : fresh.warnings) LOG_WARN("event=config_warning detail=\"%s\"", log::safe(w).c_str());
    for (auto& w : problems.warnings) LOG_WARN("event=config_warning detail=\"%s\"", log::safe(w.str()).c_str());
    // The control socket cannot move under a running mtad; keep the one we listen on.
    fresh.control_socket = cfg_.control_socket;
    if (fresh.spool_dir != cfg_.spool_dir || fresh.mail_dir != cfg_.mail_dir || listeners_changed(fresh, cfg_))
        LOG_WARN("event=reload_partial detail=\"listeners and directories change only on restart\"");
    // Keep the lists the open sockets were bound from, so that the next reload compares against them.
    fresh.smtp_listen = cfg_.smtp_listen;
    fresh.submission_listen = cfg_.submission_listen;
    fresh.smtps_listen = cfg_.smtps_listen;
    fresh.metrics_listen = cfg_.metrics_listen;
    cfg_ = std::move(fresh);
    tables_.configure(cfg_);
    tables_.sync();  // before the roles get the new config, so the queue finds the new tables
    log::configure(cfg_.log_level, cfg_.log_format);
    // mta-smtpd is chrooted and unprivileged: it gets the certificate and key as PEM text and swaps
    // its TLS context in place (or keeps the old one if they are broken), so sessions live on.
    std::string cert_pem, key_pem;
    const std::size_t pem_max = 64 * 1024 - 1;  // read as root, below 64 KiB so it fits one IPC message
    bool have_pem = !cfg_.tls_cert.empty() && !cfg_.tls_key.empty() && read_file(cfg_.tls_cert, cert_pem, pem_max) &&
                    read_file(cfg_.tls_key, key_pem, pem_max);
    if (!cfg_.tls_cert.empty() && !have_pem)
        LOG_ERROR("event=tls_read_failed cert=%s key=%s", log::safe(cfg_.tls_cert).c_str(), log::safe(cfg_.tls_key).c_str());
    for (auto& c : children_) {
        if (!c->link || !c->link->open()) continue;
        wire::Config conf{cfg_.text, cfg_.source, false, "", ""};
        if (have_pem && c->role == Role::smtpd) conf = {cfg_.text, cfg_.source, true, cert_pem, key_pem};
        c->link->send(wire::encode(conf));
    }
    LOG_INFO("event=reloaded config=%s", log::safe(cfg_.source).c_str());
    msg = "reloaded";
    return true;
}

void Master::set_log_level(const std::string& level) {
    log::Level lvl;
    if (!log::parse_level(level, lvl)) return;
    log::set_level(lvl);
    for (auto& c : children_) {
        if (!c->link || !c->link->open()) continue;
        c->link->send(wire::encode(wire::LogLevel{level}));
    }
}

// Phase 1 stops the smtpd processes so no new mail is accepted; phase 2 stops the rest once they are
// gone, so the queue can still answer the commits of transactions that were finishing.
void Master::begin_stop() {
    if (stopping_) return;
    stopping_ = true;
    stop_phase_ = 1;
    for (auto& c : children_)
        if (c->restart_timer) evtimer_del(c->restart_timer.get());
    auto* t = evtimer_new(base_, &Master::on_stop_timer, this);
    events_.emplace_back(t);
    struct timeval tv = {kStopGraceSeconds, 0};
    evtimer_add(t, &tv);
    check_stopped();
}

void Master::check_stopped() {
    auto send_stop = [&](bool smtpd) {
        for (auto& c : children_) {
            if ((c->role == Role::smtpd) != smtpd || c->pid < 0 || c->stopping) continue;
            c->stopping = true;
            if (c->link && c->link->open()) c->link->send(wire::encode(wire::Stop{}));
            else kill(c->pid, SIGTERM);
        }
    };
    auto alive = [&](bool smtpd) {
        for (auto& c : children_)
            if ((c->role == Role::smtpd) == smtpd && c->pid > 0) return true;
        return false;
    };
    if (stop_phase_ == 1) {
        send_stop(true);
        if (alive(true)) return;
        stop_phase_ = 2;
    }
    if (stop_phase_ == 2) {
        send_stop(false);
        if (alive(false)) return;
        event_base_loopexit(base_, nullptr);
    }
}

void Master::on_stop_timer(int, short, void* arg) {
    auto* m = static_cast<Master*>(arg);
    for (auto& c : m->children_)
        if (c->pid > 0) m->kill_child(*c, "did not stop in time");
    // SIGCHLD will finish the loop; guard against a child stuck in D state.
    struct timeval tv = {3, 0};
    event_base_loopexit(m->base_, &tv);
}

}  // namespace mta::master
