// mtad start-up chores that need root: system users, spool/Maildir/chroot directories, listening sockets.
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fd.h"
#include "common/log.h"
#include "master/listener_checks.h"
#include "master/master.h"

namespace mta::master {
namespace {

bool mkdirs(const std::string& path, mode_t mode, std::string& err) {
    std::string cur;
    std::size_t pos = 0;
    while (pos != std::string::npos) {
        pos = path.find('/', pos + 1);
        cur = path.substr(0, pos);
        if (cur.empty()) continue;
        if (mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) {
            err = "mkdir " + cur + ": " + strerror(errno);
            return false;
        }
    }
    return true;
}

// Directory owned by `user` (root when empty) with `mode`; refuses a symlink in the last component.
bool owned_dir(const std::string& path, const std::string& user, mode_t mode, std::string& err) {
    if (!mkdirs(path, 0755, err)) return false;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        err = path + " is not a directory";
        return false;
    }
    if (geteuid() != 0) return true;
    uid_t uid = 0;
    gid_t gid = 0;
    if (!user.empty()) {
        struct passwd* pw = getpwnam(user.c_str());
        if (!pw) { err = "unknown user " + user; return false; }
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    if (chown(path.c_str(), uid, gid) != 0 || chmod(path.c_str(), mode) != 0) {
        err = "chown/chmod " + path + ": " + strerror(errno);
        return false;
    }
    return true;
}

}  // namespace

namespace {
// Runs useradd once; its exit status.
int run_useradd(const std::string& name) {
    // The name was validated by the config parser ([a-z0-9_.-], <= 32 chars); no shell is involved.
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) { dup2(devnull, 1); dup2(devnull, 2); }
        execl("/usr/sbin/useradd", "useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
              "--shell", "/usr/sbin/nologin", "--user-group", name.c_str(), (char*)nullptr);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
}  // namespace

bool ensure_user(const std::string& name, std::string& err) {
    if (getpwnam(name.c_str())) return true;
    // Two mtad instances starting together (two spools on one host) race for /etc/passwd's lock: the
    // loser's useradd fails while the winner's is still writing. Wait for the lock, a few seconds at most.
    int rc = -1;
    for (int attempt = 0; attempt < 50; attempt++) {
        rc = run_useradd(name);
        if (getpwnam(name.c_str())) {
            if (rc == 0) LOG_INFO("event=user_created user=%s", name.c_str());
            return true;
        }
        if (rc == 127) break;  // no useradd at all: waiting will not help
        usleep(100 * 1000);
    }
    err = "could not create system user " + name + " (useradd exit " + std::to_string(rc) + ")";
    return false;
}

bool Master::prepare_filesystem(std::string& err) {
    if (geteuid() == 0) {
        // Several mtad instances starting at once on a fresh host (tests, or one per spool) must not run
        // useradd side by side: on a fresh Debian root one of them once saw a user that the other's
        // concurrent useradd then wrote with another uid, and chowned its Maildir root to a uid nobody
        // has. One lock around "look up, else create" serializes them; the lock goes with the process.
        UniqueFd lock(open("/run/mtad-users.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
        if (lock) while (flock(lock.get(), LOCK_EX) != 0 && errno == EINTR) {}
        for (auto* u : {&cfg_.smtpd_user, &cfg_.queue_user, &cfg_.smtp_user, &cfg_.resolver_user, &cfg_.msgauth_user,
                        &cfg_.mail_owner})
            if (!ensure_user(*u, err)) return false;
        if (!cfg_.metrics_listen.empty() && !ensure_user(cfg_.metrics_user, err)) return false;
    } else {
        LOG_WARN("event=not_root detail=\"running unprivileged: roles will not change user or chroot\"");
    }
    // The spool root stays root's: it holds the control socket and the other roles' chroots, which the
    // queue user must not be able to rename or replace. The queue owns only its subdirectory.
    return owned_dir(cfg_.spool_dir, "", 0755, err) && owned_dir(queue_dir(cfg_), cfg_.queue_user, 0711, err) &&
           owned_dir(cfg_.spool_dir + "/empty", "", 0555, err) &&
           owned_dir(cfg_.spool_dir + "/resolver", cfg_.resolver_user, 0700, err) &&
           owned_dir(cfg_.spool_dir + "/msgauth", "", 0555, err) &&
           owned_dir(cfg_.mail_dir, cfg_.mail_owner, 0700, err);
}

namespace {
std::string bound_address(int fd, const HostPort& configured) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN];
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return configured.str();
    HostPort hp;
    if (ss.ss_family == AF_INET) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        hp.port = ntohs(s4->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        hp.port = ntohs(s6->sin6_port);
    } else {
        return configured.str();
    }
    hp.host = host;
    return hp.str();
}
}  // namespace

bool Master::open_listeners(std::string& err) {
    auto add = [&](const std::string& kind, const std::vector<HostPort>& addrs) {
        for (auto& hp : addrs) {
            struct addrinfo hints = {}, *res = nullptr;
            hints.ai_socktype = SOCK_STREAM;
            hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
            std::string port = std::to_string(hp.port);
            int rc = getaddrinfo(hp.host.empty() ? nullptr : hp.host.c_str(), port.c_str(), &hints, &res);
            if (rc != 0) { err = kind + "_listen " + hp.str() + ": " + gai_strerror(rc); return false; }
            for (auto* ai = res; ai; ai = ai->ai_next) {
                UniqueFd fd(socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
                int one = 1;
                if (fd) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                // [::]:port alone is dual-stack; any other IPv6 socket, and [::] beside IPv4 entries on the
                // same port, is IPv6-only (listener_checks.h).
                bool dual = ai->ai_family == AF_INET6 &&
                            IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr) &&
                            ipv6_wildcard_dual_stack(cfg_, hp.port);
                int v6only = dual ? 0 : 1;
                if (fd && ai->ai_family == AF_INET6) setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
                if (!fd || bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd.get(), 1024) != 0) {
                    err = kind + "_listen " + hp.str() + ": " + strerror(errno);
                    freeaddrinfo(res);
                    return false;
                }
                // The address actually bound: with port 0 the kernel chose the port, and this line is
                // where an admin (or a test) learns it.
                LOG_INFO("event=listening kind=%s addr=%s%s", kind.c_str(), bound_address(fd.get(), hp).c_str(),
                         dual ? " dual_stack=yes" : "");
                listeners_.push_back({kind, hp, std::move(fd)});
            }
            freeaddrinfo(res);
        }
        return true;
    };
    return add("smtp", cfg_.smtp_listen) && add("submission", cfg_.submission_listen) &&
           add("smtps", cfg_.smtps_listen) && add("metrics", cfg_.metrics_listen);
}

}  // namespace mta::master
