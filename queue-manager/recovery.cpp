// Startup recovery of the queue (Store::recover). Runs before anyone is answered. Trusts nothing on disk:
// undecodable records are quarantined, messages without a readable body become corrupt, the schedule is
// rebuilt from the recipient records, and body files nobody refers to are removed.
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_map>
#include <algorithm>

#include "common/fault.h"
#include "common/log.h"
#include "queue-manager/qid.h"
#include "queue-manager/store.h"

namespace mta::queue {
namespace {

struct MsgInfo {
    bool corrupt = false;
    uint32_t records = 0;
};

std::string body_problem(const std::string& body_dir, uint64_t msgid, uint64_t size) {
    std::string path = body_dir + "/" + format_qid(msgid);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);  // a FIFO must not block
    if (fd < 0) return std::string("body: ") + strerror(errno);
    std::string why = body_fd_problem(fd, size);
    ::close(fd);
    return why;
}

int put_raw(MDB_txn* t, MDB_dbi d, std::string_view k, std::string_view v) {
    MDB_val key = to_val(k), val = to_val(v);
    return mdb_put(t, d, &key, &val, 0);
}
int del_raw(MDB_txn* t, MDB_dbi d, std::string_view k) {
    MDB_val key = to_val(k);
    int rc = mdb_del(t, d, &key, nullptr);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

struct DirClose { void operator()(DIR* d) const { closedir(d); } };

}  // namespace

std::string body_fd_problem(int fd, uint64_t recorded_size) {
    struct stat st;
    if (fstat(fd, &st) != 0) return std::string("body: ") + strerror(errno);
    if (!S_ISREG(st.st_mode)) return "body is not a plain file";
    if (uint64_t(st.st_size) != recorded_size)
        return "body size " + std::to_string(st.st_size) + " differs from the recorded " + std::to_string(recorded_size);
    return "";
}

int Store::recover_records(MDB_txn* t, const std::string& body_dir, RecoveryReport& rep, std::vector<uint64_t>& live) {
    rep = RecoveryReport{};
    live.clear();
    std::unordered_map<uint64_t, MsgInfo> msgs;
    std::vector<std::pair<std::string, std::string>> bad;       // undecodable: key, raw value
    std::vector<std::pair<std::string, std::string>> rewrite;   // now corrupt: key, new value
    int rc;
    CursorPtr c = open_cursor(t, messages_, rc);
    if (!c) return rc;
    rc = walk(c.get(), {}, [&](std::string_view k, std::string_view v) {
        uint64_t msgid;
        MessageRecord m;
        std::string err;
        if (!parse_message_key(k, msgid) || !decode(v, m, err)) {
            LOG_ERROR("event=corrupt record=message key_len=%zu reason=\"%s\" action=quarantined", k.size(),
                      log::safe(err.empty() ? "bad key" : err).c_str());
            bad.emplace_back(k, v);
            return 0;
        }
        rep.messages++;
        MTA_CRASH_POINT("queue.recovery");  // a crash while the queue is being recovered
        std::string why;
        if (m.state == MessageState::active && !(why = body_problem(body_dir, msgid, m.size)).empty()) {
            LOG_ERROR("event=corrupt qid=%s reason=\"%s\"", format_qid(msgid).c_str(), log::safe(why).c_str());
            m.state = MessageState::corrupt;
            rewrite.emplace_back(k, encode(m));
            rep.corrupt++;
        } else if (m.state == MessageState::corrupt) {
            LOG_WARN("event=corrupt qid=%s reason=\"kept from an earlier run\"", format_qid(msgid).c_str());
        }
        msgs[msgid].corrupt = m.state == MessageState::corrupt;
        return 0;
    });
    if (rc) return rc;
    for (auto& [key, raw] : bad) {
        if ((rc = quarantine(t, 'm', key, raw)) || (rc = del_raw(t, messages_, key))) return rc;
        rep.quarantined++;
    }
    for (auto& [key, val] : rewrite)
        if ((rc = put_raw(t, messages_, key, val))) return rc;
    bad.clear();

    if ((rc = mdb_drop(t, schedule_, 0))) return rc;
    std::vector<std::string> orphans;
    c = open_cursor(t, recipients_, rc);
    if (!c) return rc;
    rc = walk(c.get(), {}, [&](std::string_view k, std::string_view v) {
        uint64_t msgid;
        uint32_t idx;
        RecipientRecord r;
        std::string err;
        if (!parse_recipient_key(k, msgid, idx) || !decode(v, r, err)) {
            LOG_ERROR("event=corrupt record=recipient reason=\"%s\" action=quarantined",
                      log::safe(err.empty() ? "bad key" : err).c_str());
            bad.emplace_back(k, v);
            return 0;
        }
        auto it = msgs.find(msgid);
        if (it == msgs.end()) { orphans.emplace_back(k); return 0; }
        rep.recipients++;
        it->second.records++;
        if (it->second.corrupt || !r.scheduled()) return 0;
        rep.scheduled++;
        return put_raw(t, schedule_, schedule_key(r.next_attempt, msgid, idx).view(), {});
    });
    if (rc) return rc;
    c.reset();
    for (auto& [key, raw] : bad) {
        if ((rc = quarantine(t, 'r', key, raw)) || (rc = del_raw(t, recipients_, key))) return rc;
        rep.quarantined++;
    }
    for (auto& key : orphans) {
        if ((rc = del_raw(t, recipients_, key))) return rc;
        rep.orphan_recipients++;
    }
    // A message with no recipient records left was finished; only its deletion was lost.
    for (auto& [msgid, info] : msgs) {
        if (info.records == 0 && !info.corrupt) {
            if ((rc = del_raw(t, messages_, message_key(msgid).view()))) return rc;
            LOG_INFO("event=removed qid=%s reason=\"finished before restart\"", format_qid(msgid).c_str());
            rep.finished++;
            continue;
        }
        live.push_back(msgid);
    }
    std::sort(live.begin(), live.end());
    return 0;
}

bool Store::recover(const std::string& body_dir, RecoveryReport& rep, std::string& err) {
    if (mkdir(body_dir.c_str(), 0700) != 0 && errno != EEXIST) {
        err = "mkdir " + body_dir + ": " + strerror(errno);
        return false;
    }
    std::vector<uint64_t> live;
    int rc = write_txn([&](MDB_txn* t) { return recover_records(t, body_dir, rep, live); });
    if (rc) { err = "recovery: " + error_text(rc); return false; }
    std::unique_ptr<DIR, DirClose> d(opendir(body_dir.c_str()));
    if (!d) { err = "opendir " + body_dir + ": " + strerror(errno); return false; }
    while (struct dirent* e = readdir(d.get())) {
        std::string_view name = e->d_name;
        if (name == "." || name == ".." || name == kSpaceProbe) continue;
        auto id = parse_qid(name);
        if (!id) {
            LOG_WARN("event=unknown_spool_file name=\"%s\" action=ignored", log::safe(name).c_str());
            continue;
        }
        if (std::binary_search(live.begin(), live.end(), *id)) continue;
        if (unlinkat(dirfd(d.get()), e->d_name, 0) == 0) {
            LOG_DEBUG("event=orphan_body_removed qid=%s", format_qid(*id).c_str());
            rep.orphan_bodies++;
        }
    }
    return true;
}

}  // namespace mta::queue
