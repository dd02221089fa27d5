// Maildrop pickup: sendmail (any local user) leaves files in maildrop/ (mode 1733: anyone may add,
// nobody but the queue may list). Checked at start and every second; each file is untrusted input:
// strictly parsed, its uid taken from the file owner, anything wrong moved to maildrop/bad/ and logged.
// A good file becomes a body file with our Received: header (and a Message-ID:/Date: when it has none),
// after mta-msgauth's header fields (a DKIM signature) when DKIM keys are configured, and joins the next
// group commit like an smtpd message; the maildrop file is removed only after the
// LMDB commit (at-least-once).
#include "queue-manager/pickup.h"

#include <cerrno>
#include <ctime>
#include <cstring>
#include <dirent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/log.h"
#include "common/mail_headers.h"
#include "queue-manager/dsn.h"
#include "common/wire/maildrop.h"
#include "queue-manager/qid.h"

namespace mta::queue {
using wire::Maildrop;
using wire::parse_maildrop;
namespace {

constexpr std::size_t kPickupPerScan = 200;
constexpr uint64_t kStaleTemp = 86400;        // a sendmail temp file older than this was abandoned
constexpr uint64_t kHeaderAllowance = 1 << 20; // envelope lines on top of message_size_limit

struct DirClose { void operator()(DIR* d) const { closedir(d); } };

}  // namespace

void Pickup::configure(const Config& cfg) {
    hostname_ = cfg.hostname;
    size_limit_ = cfg.message_size_limit;
    // Local submission is trusted mail: mta-msgauth signs it where a key exists, and has nothing else to
    // do for it, so without keys it is not asked at all (as smtpd's wants_msgauth decides).
    sign_ = !cfg.dkim_keys.empty();
    default_accept_ = cfg.msgauth_default_action == "accept";
    msgauth_timeout_ = cfg.msgauth_timeout ? cfg.msgauth_timeout : 60;
    cfg_ = std::make_shared<const Config>(cfg);
}

bool Pickup::start(std::string& err) {
    if (mkdir("maildrop", 01733) != 0 && errno != EEXIST) { err = std::string("mkdir maildrop: ") + strerror(errno); return false; }
    if (chmod("maildrop", 01733) != 0) { err = std::string("chmod maildrop: ") + strerror(errno); return false; }
    if (mkdir("maildrop/bad", 0700) != 0 && errno != EEXIST) { err = std::string("mkdir maildrop/bad: ") + strerror(errno); return false; }
    dir_fd_.reset(::open("maildrop", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir_fd_) { err = std::string("open maildrop: ") + strerror(errno); return false; }
    scan_ev_.reset(event_new(base_, -1, EV_PERSIST, [](evutil_socket_t, short, void* a) {
        static_cast<Pickup*>(a)->scan();
    }, this));
    struct timeval tv = {1, 0};
    evtimer_add(scan_ev_.get(), &tv);
    return true;
}

void Pickup::reject(const std::string& name, const std::string& why) {
    LOG_ERROR("event=maildrop_rejected file=%s reason=\"%s\" action=moved_to_bad", log::safe(name).c_str(),
              log::safe(why).c_str());
    std::string to = "bad/" + name;
    if (renameat(dir_fd_.get(), name.c_str(), dir_fd_.get(), to.c_str()) != 0)
        unlinkat(dir_fd_.get(), name.c_str(), 0);
}

void Pickup::scan() {
    free_ended_jobs();
    if (stopping_ || !dir_fd_) return;
    expire(now_());
    int dfd = openat(dir_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    std::unique_ptr<DIR, DirClose> d(fdopendir(dfd));
    if (!d) { ::close(dfd); return; }
    std::vector<std::string> names;
    uint64_t now = now_();
    while (struct dirent* e = readdir(d.get())) {
        std::string name = e->d_name;
        if (name == "." || name == ".." || name == "bad") continue;
        if (name[0] == 't') {  // sendmail still writing, or gave up long ago
            struct stat st;
            if (fstatat(dir_fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                uint64_t(st.st_mtime) + kStaleTemp < now)
                unlinkat(dir_fd_.get(), name.c_str(), 0);
            continue;
        }
        if (busy_.count(name)) continue;
        if (auto r = retry_at_.find(name); r != retry_at_.end()) {
            if (r->second > now) continue;
            retry_at_.erase(r);
        }
        names.push_back(std::move(name));
        if (names.size() >= kPickupPerScan) break;
    }
    d.reset();
    for (auto& n : names) pick_up(n);
}

void Pickup::pick_up(const std::string& name) {
    if (name[0] != 'm' || name.size() > 64) return reject(name, "unexpected file name");
    UniqueFd fd(openat(dir_fd_.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    struct stat st;
    if (!fd || fstat(fd.get(), &st) != 0) return reject(name, std::string("open: ") + strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1) return reject(name, "not a plain file");
    uint64_t limit = (size_limit_ ? size_limit_ : (uint64_t(1) << 30)) + kHeaderAllowance;
    if (uint64_t(st.st_size) > limit) return reject(name, "too large");
    std::string data(std::size_t(st.st_size), '\0');
    std::size_t got = 0;
    while (got < data.size()) {
        ssize_t n = read(fd.get(), data.data() + got, data.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += std::size_t(n);
    }
    if (got != data.size()) return reject(name, "short read");
    Maildrop md;
    std::string err;
    if (!parse_maildrop(data, md, err)) return reject(name, err);
    // Only root may speak for another user: everyone else's file must carry its owner's uid.
    if (md.uid != uint64_t(st.st_uid) && st.st_uid != 0) return reject(name, "uid does not match file owner");
    uint64_t id;
    if (!store_.allocate_id(id, err)) {
        LOG_ERROR("event=maildrop_deferred file=%s reason=\"%s\"", log::safe(name).c_str(), log::safe(err).c_str());
        return;
    }
    // The header dates are on the wall clock, like the file's mtime; the queue keeps its own time.
    uint64_t now = uint64_t(time(nullptr));
    std::string qid = format_qid(id);
    std::string received = "Received: by " + hostname_ + " (mta sendmail, from userid " + std::to_string(md.uid) +
                           ")\r\n\tid " + qid + ";\r\n\t" + rfc5322_date(time_t(now)) + "\r\n";
    // Local submission: a missing Message-ID:/Date: is ours to add, as Postfix's cleanup does for
    // pickup. The date is when sendmail wrote the file (its mtime), not when we got to it; in UTC,
    // since the chroot has no zone files.
    uint64_t written = st.st_mtime > 0 && uint64_t(st.st_mtime) <= now ? uint64_t(st.st_mtime) : now;
    md.body = with_missing_headers(md.body, {make_message_id(time_t(now), qid, hostname_), rfc5322_date(time_t(written))});
    CommitItem c;
    c.msgid = id;
    c.maildrop = name;
    c.msg.arrival = now_();
    c.msg.sender = md.sender;
    c.msg.submit_uid = md.uid;
    c.msg.ret = md.ret;      // sendmail -R, -V, -N: as MAIL FROM RET=/ENVID= and RCPT NOTIFY=
    c.msg.envid = md.envid;
    c.msg.nrcpt = uint32_t(md.rcpts.size());
    bool eight = false;
    for (unsigned char ch : md.body) eight = eight || ch >= 0x80;
    c.msg.body_type = eight ? 1 : 0;
    for (auto& r : md.rcpts) {
        RecipientRecord rec;
        rec.addr = r;
        rec.notify = md.notify;
        c.rcpts.push_back(std::move(rec));
    }
    LOG_INFO("event=maildrop_picked qid=%s file=%s uid=%llu", qid.c_str(), log::safe(name).c_str(),
             (unsigned long long)md.uid);
    busy_.insert(name);
    Waiting w{std::move(c), std::move(received), std::move(md.body), now + msgauth_timeout_};
    if (cfg_ && !cfg_->non_smtpd_milters.empty()) return start_milters(std::move(w));
    after_milters(std::move(w));
}

void Pickup::after_milters(Waiting w) {
    w.deadline = now_() + msgauth_timeout_;
    if (sign_) ask_msgauth(std::move(w));
    else finish(std::move(w), "", {});
}

// The message (without our Received:, as smtpd hands it over) in a sealed memfd, as mta-msgauth demands.
void Pickup::ask_msgauth(Waiting w) {
    const uint64_t token = w.item.msgid;
    UniqueFd mem(memfd_create("mta-message", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!mem || !write_all(mem.get(), w.body) || !wire::seal_msgauth_body(mem.get())) {
        LOG_ERROR("event=memfd_failed qid=%s error=\"%s\"", format_qid(token).c_str(), strerror(errno));
        return unavailable(std::move(w), "memfd");
    }
    wire::MsgauthRequest r{token, "127.0.0.1", "localhost", w.item.msg.sender, "", true, std::move(mem)};
    if (!ask_ || !ask_(wire::encode(r, 0), token)) return unavailable(std::move(w), "no link");
    waiting_[token] = std::move(w);
}

// Verdicts past their deadline (checked by the scan, every second) get the default.
void Pickup::expire(uint64_t now) {
    std::vector<uint64_t> late;
    for (auto& [token, w] : waiting_)
        if (w.deadline <= now) late.push_back(token);
    for (uint64_t token : late) msgauth_lost(token, "timeout");
}

void Pickup::msgauth_reply(uint64_t token, const wire::MsgauthReply& r) {
    auto it = waiting_.find(token);
    if (it == waiting_.end()) return;  // already decided (timeout)
    Waiting w = std::move(it->second);
    waiting_.erase(it);
    const std::string qid = format_qid(token);
    const std::string& name = w.item.maildrop;
    if (r.action == ipc::MsgauthAction::reject) {
        LOG_WARN("event=msgauth_refused qid=%s file=%s code=%d text=\"%s\"", qid.c_str(), log::safe(name).c_str(),
                 r.code, log::safe(r.text).c_str());
        busy_.erase(name);
        return reject(name, "mta-msgauth: " + std::to_string(r.code) + " " + r.text);
    }
    if (r.action == ipc::MsgauthAction::tempfail) {
        LOG_WARN("event=maildrop_deferred qid=%s file=%s reason=\"mta-msgauth: %d %s\"", qid.c_str(),
                 log::safe(name).c_str(), r.code, log::safe(r.text).c_str());
        return put_back(name);
    }
    if (!wire::cuts_fit(r.cuts, w.body.size())) {
        LOG_ERROR("event=msgauth_bad_reply qid=%s reason=\"cut past the message\"", qid.c_str());
        return unavailable(std::move(w), "bad reply");
    }
    if (r.action == ipc::MsgauthAction::hold) w.item.msg.hold_reason = r.text;  // the group commit stores it held
    finish(std::move(w), r.prepend, r.cuts);
}

void Pickup::msgauth_lost(uint64_t token, const char* why) {
    auto it = waiting_.find(token);
    if (it == waiting_.end()) return;
    Waiting w = std::move(it->second);
    waiting_.erase(it);
    unavailable(std::move(w), why);
}

// msgauth_default_action, as smtpd applies it: accept commits the message unsigned; tempfail leaves the
// maildrop file for a later scan.
void Pickup::unavailable(Waiting w, const char* why) {
    LOG_WARN("event=msgauth_unavailable qid=%s file=%s reason=\"%s\" action=%s", format_qid(w.item.msgid).c_str(),
             log::safe(w.item.maildrop).c_str(), why, default_accept_ ? "accept" : "tempfail");
    if (!default_accept_) return put_back(w.item.maildrop);
    finish(std::move(w), "", {});
}

void Pickup::finish(Waiting w, std::string_view prepend, const std::vector<wire::MsgauthCut>& cuts) {
    CommitItem& c = w.item;
    const std::string qid = format_qid(c.msgid);
    UniqueFd out(openat(body_dir_fd_, qid.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    bool ok = out && write_all(out.get(), w.received) && write_all(out.get(), prepend);
    uint64_t size = w.received.size() + prepend.size();
    std::size_t pos = 0;
    for (const wire::MsgauthCut& cut : cuts) {
        std::string_view keep(w.body.data() + pos, std::size_t(cut.offset) - pos);
        ok = ok && write_all(out.get(), keep);
        size += keep.size();
        pos = std::size_t(cut.offset + cut.length);
    }
    std::string_view rest(w.body.data() + pos, w.body.size() - pos);
    ok = ok && write_all(out.get(), rest);
    size += rest.size();
    if (!ok || fsync(out.get()) != 0) {
        LOG_ERROR("event=maildrop_deferred qid=%s file=%s reason=\"body write: %s\"", qid.c_str(),
                  log::safe(c.maildrop).c_str(), strerror(errno));
        unlinkat(body_dir_fd_, qid.c_str(), 0);
        return put_back(c.maildrop);
    }
    c.msg.size = size;
    submit_(std::move(c));
}

void Pickup::committed(const std::string& name, const std::string& qid) {
    if (unlinkat(dir_fd_.get(), name.c_str(), 0) != 0)
        LOG_ERROR("event=maildrop_unlink_failed qid=%s file=%s reason=\"%s\"", qid.c_str(), log::safe(name).c_str(),
                  strerror(errno));
    busy_.erase(name);
}

}  // namespace mta::queue
