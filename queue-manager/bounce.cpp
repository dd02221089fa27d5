// Notifications: result ops that ask for a DSN become new queued messages from <> in the same LMDB
// transaction that removes (bounce) or updates (delay) the recipients, so a crash either keeps the
// recipient or has the DSN queued, never neither. Mail from the null sender is never bounced.
#include "queue-manager/bounce.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fd.h"
#include "common/fault.h"
#include "common/file_util.h"
#include "common/log.h"
#include "queue-manager/dsn.h"
#include "queue-manager/policy.h"
#include "queue-manager/qid.h"

namespace mta::queue {
namespace {

// Only a plain file is read: a FIFO or device planted in body/ must not block the queue.
bool read_prefix(int dir_fd, uint64_t msgid, std::size_t limit, std::string& out) {
    int fd = openat(dir_fd, format_qid(msgid).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return false;
    UniqueFd owner(fd);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    out.clear();
    char buf[65536];
    while (out.size() < limit) {
        ssize_t n = read(fd, buf, std::min(sizeof buf, limit - out.size()));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) break;
        out.append(buf, std::size_t(n));
    }
    return true;
}

bool write_file(int dir_fd, uint64_t msgid, const std::string& data) {
    int fd = openat(dir_fd, format_qid(msgid).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    UniqueFd owner(fd);
#ifdef MTA_FAULT
    std::size_t half = data.size() / 2;  // the crash point in the middle of the DSN's body file
    if (!write_all(fd, std::string_view(data).substr(0, half))) return false;
    MTA_CRASH_POINT("queue.dsn.mid_write");
    return write_all(fd, std::string_view(data).substr(half)) && fsync(fd) == 0;
#else
    return write_all(fd, data) && fsync(fd) == 0;
#endif
}

}  // namespace

std::string read_body_prefix(int body_dir_fd, uint64_t msgid, std::size_t limit) {
    std::string s;
    if (!read_prefix(body_dir_fd, msgid, limit, s)) return {};
    return s;
}

std::vector<uint64_t> make_notifications(Store& store, int body_dir_fd, const Config& cfg, const Clock& clock,
                                         const std::vector<Op>& results, std::vector<Op>& out) {
    const uint64_t now = clock.now();
    // One DSN per original message and kind, listing every recipient it reports on.
    std::map<std::pair<uint64_t, Op::Dsn>, std::vector<const Op*>> groups;
    for (auto& op : results)
        if (op.dsn != Op::Dsn::none) groups[{op.msgid, op.dsn}].push_back(&op);
    std::vector<uint64_t> created;
    uint64_t lifetime = RetryPolicy::from(cfg).queue_lifetime;
    for (auto& [key, ops] : groups) {
        const MessageRecord& orig = ops.front()->msg;
        std::string qid = format_qid(key.first);
        DsnKind kind = key.second == Op::Dsn::failure ? DsnKind::failure
                       : key.second == Op::Dsn::delay ? DsnKind::delay : DsnKind::success;
        if (orig.sender.empty()) {
            LOG_INFO("event=dsn_suppressed qid=%s reason=\"null sender\" nrcpt=%zu", qid.c_str(), ops.size());
            continue;
        }
        DsnInput in;
        in.kind = kind;
        in.hostname = cfg.hostname;
        in.orig_msgid = key.first;
        in.orig = orig;
        in.orig.arrival = clock.shown(orig.arrival);
        in.now = clock.shown(now);
        in.retry_until = clock.shown(orig.arrival + lifetime);
        for (const Op* op : ops) {
            in.rcpts.push_back(op->rcpt);
            in.rcpts.back().last_attempt = clock.shown(op->rcpt.last_attempt);
        }
        in.full = return_full(orig, kind);
        std::string body = read_body_prefix(body_dir_fd, key.first, in.full ? kMaxReturnedBody : kMaxReturnedHeaders + 4);
        in.original = in.full ? body : header_block(body);
        std::string err;
        if (!store.allocate_id(in.dsn_msgid, err)) {
            LOG_ERROR("event=dsn_failed qid=%s reason=\"%s\"", qid.c_str(), log::safe(err).c_str());
            continue;
        }
        std::string text = build_dsn(in);
        std::string dsn_qid = format_qid(in.dsn_msgid);
        if (!write_file(body_dir_fd, in.dsn_msgid, text)) {
            LOG_ERROR("event=dsn_failed qid=%s dsn=%s reason=\"%s\"", qid.c_str(), dsn_qid.c_str(), strerror(errno));
            unlinkat(body_dir_fd, dsn_qid.c_str(), 0);
            continue;
        }
        Op m;
        m.kind = Op::Kind::put_message;
        m.msgid = in.dsn_msgid;
        m.msg.arrival = now;
        m.msg.size = text.size();
        // The returned original (headers at least) may be 8-bit; a global DSN (RFC 6533) needs SMTPUTF8.
        m.msg.body_type = orig.smtputf8 && orig.body_type == 0 ? 1 : orig.body_type;
        m.msg.smtputf8 = orig.smtputf8;
        m.msg.nrcpt = 1;
        m.msg.client_addr = "127.0.0.1";
        m.msg.client_helo = "localhost";
        out.push_back(std::move(m));
        Op r;
        r.kind = Op::Kind::put_recipient;
        r.msgid = in.dsn_msgid;
        r.index = 0;
        r.rcpt.addr = orig.sender;
        r.rcpt.next_attempt = now;
        out.push_back(std::move(r));
        created.push_back(in.dsn_msgid);
        static const char* kinds[] = {"", "failure", "delay", "success"};
        LOG_INFO("event=dsn_queued qid=%s dsn=%s kind=%s to=<%s> nrcpt=%zu", qid.c_str(), dsn_qid.c_str(),
                 kinds[int(key.second)], log::safe(orig.sender).c_str(), ops.size());
    }
    if (!created.empty() && fsync(body_dir_fd) != 0) {
        LOG_ERROR("event=dsn_failed reason=\"spool fsync: %s\"", strerror(errno));
        for (uint64_t id : created) unlinkat(body_dir_fd, format_qid(id).c_str(), 0);
        out.clear();
        created.clear();
    }
    return created;
}

}  // namespace mta::queue
