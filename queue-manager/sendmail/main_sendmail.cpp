// sendmail: the sendmail-compatible submission command (see man/sendmail.1). Runs as the calling user
// with no privilege: it writes one maildrop file into <spool_dir>/queue/maildrop/ (mode 1733) and exits;
// mta-queue picks it up (now, or when it next starts) and treats the file as untrusted input.
// Exit codes follow sysexits.h.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <memory>
#include <pwd.h>
#include <set>
#include <string>
#include <sys/random.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>
#include <vector>

#include "common/address.h"
#include "common/alias_expand.h"
#include "common/tool_config.h"
#include "common/control_client.h"
#include "common/fd.h"
#include "common/file_util.h"
#include "common/version.h"
#include "common/wire/maildrop.h"
#include "queue-manager/sendmail/prepare.h"
#include "queue-manager/sendmail/sendmail_opts.h"

using namespace mta;
using namespace mta::sendmail;
using namespace mta::wire;

namespace {

std::string random_hex(std::size_t bytes) {
    unsigned char b[32] = {};
    if (getrandom(b, bytes, 0) != ssize_t(bytes)) {
        uint64_t x = uint64_t(time(nullptr)) ^ (uint64_t(getpid()) << 32) ^ uint64_t(clock());
        for (std::size_t i = 0; i < bytes; i++, x = x * 6364136223846793005ULL + 1442695040888963407ULL)
            b[i] = static_cast<unsigned char>(x >> 56);
    }
    static const char hex[] = "0123456789ABCDEF";
    std::string s;
    for (std::size_t i = 0; i < bytes; i++) s += hex[b[i] >> 4], s += hex[b[i] & 15];
    return s;
}

std::string clean_name(const char* s) {
    std::string out;
    for (; *s && out.size() < 200; s++) {
        unsigned char c = static_cast<unsigned char>(*s);
        if (c >= 0x20 && c != 0x7f && c != '"' && c != '\\') out += char(c);
    }
    return out;
}

// The expansion mta-smtpd does at RCPT, when this user can read the tables (mtamap makes them 0644);
// an unreadable table leaves the recipients as they are. Returns an exit code, EX_OK when fine.
int expand_aliases(const Config& cfg, std::vector<std::string>& rcpts) {
    std::string err;
    std::unique_ptr<table::Table> virt, aliases;
    if (!cfg.virtual_map.empty()) virt = table::Table::open(cfg.virtual_map, err);
    if (!cfg.alias_map.empty()) aliases = table::Table::open(cfg.alias_map, err);
    alias::Maps maps = alias::from_tables(virt.get(), aliases.get());
    if (maps.empty()) return EX_OK;
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (auto& r : rcpts) {
        alias::Result res = alias::expand(r, cfg, maps);
        if (res.status == alias::Status::error) {
            fprintf(stderr, "sendmail: %s: %s\n", clean_name(r.c_str()).c_str(), clean_name(res.error.c_str()).c_str());
            return EX_TEMPFAIL;
        }
        std::string domain = addr::lower(r.substr(r.rfind('@') + 1));
        if (res.status == alias::Status::not_found && !cfg.is_local_domain(domain) && alias::is_virtual_domain(domain, maps)) {
            fprintf(stderr, "sendmail: %s: User unknown in virtual alias table\n", clean_name(r.c_str()).c_str());
            return EX_NOUSER;
        }
        if (res.status == alias::Status::not_found) res.rcpts = {r};
        for (auto& x : res.rcpts) {
            if (!seen.insert(addr::lower(x)).second) continue;
            if (!maildrop_address_ok(x)) {
                fprintf(stderr, "sendmail: %s: alias target \"%s\" is not usable\n", clean_name(r.c_str()).c_str(),
                        clean_name(x.c_str()).c_str());
                return EX_CONFIG;
            }
            out.push_back(x);
        }
    }
    if (out.size() > kMaxMaildropRecipients) {
        fprintf(stderr, "sendmail: more than %zu recipients after alias expansion\n", kMaxMaildropRecipients);
        return EX_USAGE;
    }
    rcpts = std::move(out);
    return EX_OK;
}

const char* const kUsage =
    "usage: sendmail [-C config_file] [-t] [-i|-oi] [-f sender] [-F full_name] [-N dsn] [-R full|hdrs] "
    "[-V envid] [--] [recipient ...]\n       sendmail -bp | -q | -bi\n";

int usage(const std::string& why) {
    fprintf(stderr, "sendmail: %s\n", clean_name(why.c_str()).c_str());
    return usage_error(kUsage, EX_USAGE);
}

// -bp and -q: one request on mtad's control socket, as mailq and `mtaqueue flush` send it. The queue
// decides what this uid may see (its own sendmail mail) or do (flush: root and mtad's user only).
int queue_request(const Config& cfg, const char* what) {
    std::string answer, err;
    if (!control_request(cfg.control_socket, std::string("queue ") + what, answer, err)) {
        fprintf(stderr, "sendmail: mail system is down: %s\n", clean_name(err.c_str()).c_str());
        return EX_UNAVAILABLE;
    }
    if (answer.rfind("error:", 0) == 0) {
        fprintf(stderr, "sendmail: %s", answer.c_str());
        if (answer.back() != '\n') fputc('\n', stderr);
        return answer.find("permission denied") != std::string::npos ? EX_NOPERM : EX_UNAVAILABLE;
    }
    fwrite(answer.data(), 1, answer.size(), stdout);
    return fflush(stdout) == 0 ? EX_OK : EX_IOERR;
}

// -bi, -I, or invoked as newaliases: run the newaliases program installed beside this one.
int run_newaliases(const SendmailArgs& a) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) { fprintf(stderr, "sendmail: cannot find my own directory: %s\n", strerror(errno)); return EX_OSERR; }
    std::string dir(self, std::size_t(n));
    std::string prog = dir.substr(0, dir.rfind('/') + 1) + "newaliases";
    std::vector<const char*> args = {"newaliases"};
    if (a.explicit_config) args.insert(args.end(), {"-c", a.config.c_str()});
    args.push_back(nullptr);
    execv(prog.c_str(), const_cast<char* const*>(args.data()));
    fprintf(stderr, "sendmail: cannot run %s: %s\n", prog.c_str(), strerror(errno));
    return EX_UNAVAILABLE;
}

// Descriptors 0-2 must be open, or a file we open could become "stderr". A closed stdin is noted: it is
// an error only when a message is to be read.
bool std_fds_open() {
    bool stdin_open = true;
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) != -1) continue;
        if (fd == 0) stdin_open = false;
        int nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
        if (nfd != fd) _exit(EX_OSERR);
    }
    return stdin_open;
}

}  // namespace

int main(int argc, char** argv) {
    bool stdin_open = std_fds_open();
    // Before the sendmail-style parser, which would read "--help" as the flags -, h, e, l, p.
    answer_info_request("sendmail", argc, argv, kUsage);
    SendmailArgs a;
    std::string why;
    if (!parse_sendmail_args(std::vector<std::string>(argv, argv + argc), a, why)) return usage(why);
    if (a.mode == SendmailMode::newaliases) return run_newaliases(a);
    Config cfg;
    if (!load_tool_config("sendmail", a.explicit_config ? a.config : kDefaultConfigPath, a.explicit_config, cfg))
        return EX_CONFIG;
    if (a.mode == SendmailMode::list_queue) return queue_request(cfg, "list");
    if (a.mode == SendmailMode::flush_queue) return queue_request(cfg, "flush");
    std::string local_domain = cfg.local_domains.empty() ? cfg.hostname : cfg.local_domains.front();
    std::string sender = a.sender, full_name = clean_name(a.full_name.c_str());
    if (!a.have_sender) {
        struct passwd* pw = getpwuid(getuid());
        if (!pw) { fprintf(stderr, "sendmail: who are you? (no passwd entry for uid %u)\n", unsigned(getuid())); return EX_NOUSER; }
        sender = std::string(pw->pw_name) + "@" + cfg.hostname;
    } else if (sender == "<>") {
        sender.clear();
    } else if (sender.size() > 2 && sender.front() == '<' && sender.back() == '>') {
        sender = sender.substr(1, sender.size() - 2);
    }
    if (!sender.empty() && sender.find('@') == std::string::npos) sender += "@" + cfg.hostname;
    if (!sender.empty() && !maildrop_address_ok(sender)) {
        fprintf(stderr, "sendmail: bad sender address \"%s\"\n", clean_name(sender.c_str()).c_str());
        return EX_USAGE;
    }
    std::vector<std::string> rcpts = a.rcpts;
    if (!a.extract && rcpts.empty()) return usage("no recipients (give them as arguments, or use -t)");
    if (!stdin_open) { fprintf(stderr, "sendmail: standard input is closed; no message to send\n"); return EX_NOINPUT; }

    std::string raw;
    char buf[65536];
    uint64_t limit = cfg.message_size_limit ? cfg.message_size_limit : UINT64_MAX;
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { fprintf(stderr, "sendmail: reading the message: %s\n", strerror(errno)); return EX_IOERR; }
        raw.append(buf, std::size_t(n));
        if (raw.size() > limit) {
            fprintf(stderr, "sendmail: message larger than message_size_limit (%llu bytes)\n", (unsigned long long)limit);
            return EX_DATAERR;
        }
    }
    if (raw.find('\0') != std::string::npos) { fprintf(stderr, "sendmail: the message contains a NUL byte\n"); return EX_DATAERR; }
    time_t now = time(nullptr);
    PrepareOptions po;
    po.extract_rcpts = a.extract;
    po.sender = sender.empty() ? "MAILER-DAEMON@" + cfg.hostname : sender;
    po.full_name = full_name;
    PreparedMessage pm = prepare_message(to_crlf(raw, a.dot_ends), po);
    for (auto& r : pm.rcpts) rcpts.push_back(r);
    if (rcpts.empty()) { fprintf(stderr, "sendmail: no recipients (none on the command line or in the headers)\n"); return EX_USAGE; }

    Maildrop md;
    md.uid = getuid();
    md.sender = sender;
    md.notify = a.notify;
    md.ret = a.ret;
    md.envid = a.envid;
    md.body = std::move(pm.text);
    std::set<std::string> seen;
    for (auto r : rcpts) {
        if (r.size() > 2 && r.front() == '<' && r.back() == '>') r = r.substr(1, r.size() - 2);
        if (r.find('@') == std::string::npos) r += "@" + local_domain;
        if (!maildrop_address_ok(r)) {
            fprintf(stderr, "sendmail: bad recipient address \"%s\"\n", clean_name(r.c_str()).c_str());
            return EX_DATAERR;
        }
        if (seen.insert(addr::lower(r)).second) md.rcpts.push_back(r);
    }
    if (md.rcpts.size() > kMaxMaildropRecipients) {
        fprintf(stderr, "sendmail: more than %zu recipients\n", kMaxMaildropRecipients);
        return EX_USAGE;
    }
    if (int rc = expand_aliases(cfg, md.rcpts); rc != EX_OK) return rc;
    std::string dir = queue_dir(cfg) + "/maildrop";
    std::string tmp = dir + "/t" + random_hex(12), final_name = dir + "/m" + std::to_string(now) + "." + random_hex(12);
    // 0644 in a directory others cannot list: the unguessable name keeps it private, and the queue
    // (another user) must be able to read it.
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) {
        fprintf(stderr, "sendmail: cannot create a file in %s: %s (has mtad been started once?)\n", dir.c_str(), strerror(errno));
        return errno == ENOENT ? EX_UNAVAILABLE : EX_TEMPFAIL;
    }
    fchmod(fd.get(), 0644);
    if (!write_all(fd.get(), encode_maildrop(md)) || fsync(fd.get()) != 0) {
        fprintf(stderr, "sendmail: writing %s: %s\n", tmp.c_str(), strerror(errno));
        unlink(tmp.c_str());
        return EX_TEMPFAIL;
    }
    fd.reset();
    if (rename(tmp.c_str(), final_name.c_str()) != 0) {
        fprintf(stderr, "sendmail: rename into %s: %s\n", dir.c_str(), strerror(errno));
        unlink(tmp.c_str());
        return EX_TEMPFAIL;
    }
    // Make the rename durable where we may (root, or the queue user); others cannot open the directory.
    UniqueFd d(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d) fsync(d.get());
    return EX_OK;
}
