// Role process bootstrap and privilege drop.
#include "common/daemon.h"

#include <cerrno>
#include <event2/event.h>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/ipc.h"
#include "common/log.h"
#include "common/version.h"
#include "common/wire/wire.h"

namespace mta::daemon {

void ignore_sigpipe() { signal(SIGPIPE, SIG_IGN); }

Bootstrap start(Role self, int argc, char** argv) {
    const char* role = role_program(self);
    // Answered before fd 3 is touched: run by hand, a role has no master to read from.
    std::string usage = std::string("usage: ") + role + " [-d]\n"
                        "  started by mtad, which passes the control link on fd 3; -d logs to stderr\n";
    answer_info_request(role, argc, argv, usage.c_str());
    Bootstrap b;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-d") == 0) b.foreground = true;
        else exit(usage_error(usage.c_str()));
    }
    log::init(role, b.foreground);
    ignore_sigpipe();
    b.master = UniqueFd(kMasterFd);
    ipc::Message m;
    std::string err;
    wire::Hello hello;
    if (ipc::recv_blocking(kMasterFd, m, err) != ipc::RecvResult::ok || !wire::decode(m, hello, err)) {
        LOG_ERROR("event=bootstrap_failed reason=\"no hello from master\" detail=\"%s\"", log::safe(err).c_str());
        exit(1);
    }
    wire::Config conf;
    if (ipc::recv_blocking(kMasterFd, m, err) != ipc::RecvResult::ok || !wire::decode(m, conf, err)) {
        LOG_ERROR("event=bootstrap_failed reason=\"no config from master\" detail=\"%s\"", log::safe(err).c_str());
        exit(1);
    }
    std::vector<ConfigError> errors;
    if (!parse_config(conf.text, conf.name, b.cfg, errors)) {
        for (auto& e : errors) LOG_ERROR("event=config_error %s", log::safe(e.str()).c_str());
        exit(1);
    }
    log::configure(b.cfg.log_level, b.cfg.log_format);
    return b;
}

EventBasePtr new_event_base() {
    EventBasePtr base(event_base_new());
    if (!base) {
        LOG_ERROR("event=startup_failed reason=\"event_base_new\"");
        exit(1);
    }
    return base;
}

bool apply_loglevel(const ipc::Message& m) {
    log::Level l;
    wire::LogLevel level;
    std::string err;
    if (!wire::decode(m, level, err) || !log::parse_level(level.level, l)) return false;
    log::set_level(l);
    return true;
}

void drop_privileges_or_exit(const std::string& user, const std::string& chroot_dir) {
    std::string err;
    if (drop_privileges(user, chroot_dir, err)) return;
    LOG_ERROR("event=privdrop_failed reason=\"%s\"", log::safe(err).c_str());
    exit(1);
}

bool drop_privileges(const std::string& user, const std::string& chroot_dir, std::string& err) {
    if (geteuid() != 0) {
        LOG_WARN("event=privdrop_skipped reason=\"not running as root\" user=%s", user.c_str());
        return true;
    }
    struct passwd* pw = getpwnam(user.c_str());
    if (!pw) { err = "unknown user " + user; return false; }
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    if (!chroot_dir.empty()) {
        if (chroot(chroot_dir.c_str()) != 0) { err = "chroot " + chroot_dir + ": " + strerror(errno); return false; }
        if (chdir("/") != 0) { err = std::string("chdir /: ") + strerror(errno); return false; }
    }
    if (setgroups(1, &gid) != 0) { err = std::string("setgroups: ") + strerror(errno); return false; }
    if (setresgid(gid, gid, gid) != 0) { err = std::string("setresgid: ") + strerror(errno); return false; }
    if (setresuid(uid, uid, uid) != 0) { err = std::string("setresuid: ") + strerror(errno); return false; }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { err = std::string("no_new_privs: ") + strerror(errno); return false; }
    // Paranoia: regaining root must be impossible now.
    if (setuid(0) == 0 && uid != 0) { err = "could regain root"; return false; }
    return true;
}

}  // namespace mta::daemon
