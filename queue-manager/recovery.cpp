// Recovery of the queue, a slice at a time (recovery.h): messages, then recipients, then the schedule,
// then the body files. Each store slice is one write transaction; what it finds wrong is collected
// during the walk and repaired after it, in the same transaction.
#include "queue-manager/recovery.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include "common/fault.h"
#include "common/log.h"
#include "queue-manager/qid.h"

namespace mta::queue {
namespace {

std::string body_problem(const std::string& body_dir, uint64_t msgid, uint64_t size) {
    std::string path = body_dir + "/" + format_qid(msgid);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);  // a FIFO must not block
    if (fd < 0) return std::string("body: ") + strerror(errno);
    std::string why = body_fd_problem(fd, size);
    ::close(fd);
    return why;
}

}  // namespace

std::string body_fd_problem(int fd, uint64_t recorded_size) {
    struct stat st;
    if (fstat(fd, &st) != 0) return std::string("body: ") + strerror(errno);
    if (!S_ISREG(st.st_mode)) return "body is not a plain file";
    if (uint64_t(st.st_size) != recorded_size)
        return "body size " + std::to_string(st.st_size) + " differs from the recorded " + std::to_string(recorded_size);
    return "";
}

void RecoveryReport::add(const RecoveryReport& o) {
    messages += o.messages;
    recipients += o.recipients;
    scheduled += o.scheduled;
    corrupt += o.corrupt;
    quarantined += o.quarantined;
    orphan_bodies += o.orphan_bodies;
    orphan_recipients += o.orphan_recipients;
    finished += o.finished;
    schedule_added += o.schedule_added;
    schedule_dropped += o.schedule_dropped;
}

bool Store::recover(const std::string& body_dir, RecoveryReport& rep, std::string& err) {
    if (mkdir(body_dir.c_str(), 0700) != 0 && errno != EEXIST) {
        err = "mkdir " + body_dir + ": " + strerror(errno);
        return false;
    }
    Recovery r(*this, body_dir);
    while (!r.done())
        if (!r.step(std::size_t(1) << 20, err)) return false;
    rep = r.report();
    return true;
}

Recovery::Recovery(Store& store, std::string body_dir, std::function<bool(uint64_t)> busy)
    : store_(store), body_dir_(std::move(body_dir)), busy_(std::move(busy)), first_new_(store.first_id_this_run()) {}

const char* Recovery::phase_name(Phase p) {
    switch (p) {
    case Phase::messages: return "messages";
    case Phase::recipients: return "recipients";
    case Phase::schedule: return "schedule";
    case Phase::bodies: return "bodies";
    case Phase::done: return "done";
    }
    return "?";
}

bool Recovery::step(std::size_t budget, std::string& err) {
    if (phase_ == Phase::done) return true;
    if (phase_ == Phase::bodies) return bodies_slice(budget, err);
    RecoveryReport delta;
    std::string next;
    bool end = true;
    int rc = store_.write_txn([&](MDB_txn* t) {  // run again from scratch when the map had to grow
        delta = RecoveryReport{};
        next.clear();
        end = true;
        switch (phase_) {
        case Phase::messages: return messages_slice(t, budget, delta, next, end);
        case Phase::recipients: return recipients_slice(t, budget, delta, next, end);
        default: return schedule_slice(t, budget, delta, next, end);
        }
    });
    if (rc) {
        err = std::string("recovery (") + phase_name(phase_) + "): " + Store::error_text(rc);
        return false;
    }
    rep_.add(delta);
    if (!end) {
        from_ = std::move(next);
        return true;
    }
    from_.clear();
    phase_ = Phase(uint8_t(phase_) + 1);
    return true;
}

// Each message of an earlier run: decodable, its body the committed plain file, some recipient records
// left, and every scheduled recipient of a live message in the schedule.
int Recovery::messages_slice(MDB_txn* t, std::size_t budget, RecoveryReport& rep, std::string& next, bool& end) {
    Store& s = store_;
    int rc;
    CursorPtr mc = open_cursor(t, s.messages_, rc);
    if (!mc) return rc;
    CursorPtr rcur = open_cursor(t, s.recipients_, rc);
    if (!rcur) return rc;
    Raw bad, bad_rcpts;
    std::vector<uint64_t> corrupt, finished;
    std::vector<std::pair<Key, uint64_t>> unscheduled;  // schedule key, msgid
    std::size_t n = 0;
    rc = walk(mc.get(), from_, [&](std::string_view k, std::string_view v) {
        uint64_t msgid = 0;
        bool key_ok = parse_message_key(k, msgid);
        if (key_ok && !ours(msgid)) return kWalkStop;  // ids grow: the rest are this run's
        if (n++ == budget) {
            next.assign(k);
            end = false;
            return kWalkStop;
        }
        MessageRecord m;
        std::string err;
        if (!key_ok || !decode(v, m, err)) {
            LOG_ERROR("event=corrupt record=message key_len=%zu reason=\"%s\" action=quarantined", k.size(),
                      log::safe(err.empty() ? "bad key" : err).c_str());
            bad.emplace_back(k, v);
            return 0;
        }
        rep.messages++;
        MTA_CRASH_POINT("queue.recovery");  // a crash while the queue is being recovered
        if (busy(msgid)) return 0;
        bool dead = m.state == MessageState::corrupt;
        std::string why;
        if (!dead && !(why = body_problem(body_dir_, msgid, m.size)).empty()) {
            LOG_ERROR("event=corrupt qid=%s reason=\"%s\"", format_qid(msgid).c_str(), log::safe(why).c_str());
            corrupt.push_back(msgid);
            rep.corrupt++;
            dead = true;
        } else if (dead) {
            LOG_WARN("event=corrupt qid=%s reason=\"kept from an earlier run\"", format_qid(msgid).c_str());
        }
        uint32_t records = 0;
        int r = walk_recipients(rcur.get(), msgid, [&](uint32_t idx, std::string_view rk, std::string_view rv) {
            RecipientRecord rec;
            if (!decode(rv, rec, err)) {
                LOG_ERROR("event=corrupt record=recipient qid=%s reason=\"%s\" action=quarantined",
                          format_qid(msgid).c_str(), log::safe(err).c_str());
                bad_rcpts.emplace_back(rk, rv);
                return 0;
            }
            records++;
            rep.recipients++;
            if (dead || !rec.scheduled()) return 0;
            rep.scheduled++;
            Key sk = schedule_key(rec.next_attempt, msgid, idx);
            MDB_val val;
            int g = db_get(t, s.schedule_, sk.view(), val);
            if (g == MDB_NOTFOUND) unscheduled.emplace_back(sk, msgid);
            return g == MDB_NOTFOUND ? 0 : g;
        });
        if (r) return r;
        // No recipient record left: the message was finished, only its deletion was lost.
        if (records == 0 && !dead) finished.push_back(msgid);
        return 0;
    });
    if (rc) return rc;
    mc.reset();
    rcur.reset();
    if ((rc = quarantine_all(t, 'm', s.messages_, bad, rep)) || (rc = quarantine_all(t, 'r', s.recipients_, bad_rcpts, rep)))
        return rc;
    for (uint64_t msgid : corrupt)
        if ((rc = s.mark_corrupt(t, msgid))) return rc;
    for (uint64_t msgid : finished) {
        if ((rc = db_del(t, s.messages_, message_key(msgid).view()))) return rc;
        LOG_INFO("event=removed qid=%s reason=\"finished before restart\"", format_qid(msgid).c_str());
        rep.finished++;
    }
    for (auto& [key, msgid] : unscheduled) {
        if ((rc = db_put(t, s.schedule_, key.view(), {}))) return rc;
        LOG_WARN("event=schedule_repaired qid=%s reason=\"a scheduled recipient had no schedule entry\"",
                 format_qid(msgid).c_str());
        rep.schedule_added++;
    }
    return 0;
}

int Recovery::quarantine_all(MDB_txn* t, char db, MDB_dbi from, const Raw& records, RecoveryReport& rep) {
    for (auto& [key, raw] : records) {
        if (int rc = store_.quarantine(t, db, key, raw)) return rc;
        if (int rc = db_del(t, from, key)) return rc;
        rep.quarantined++;
    }
    return 0;
}

// Recipient records of an earlier run whose message record is gone.
int Recovery::recipients_slice(MDB_txn* t, std::size_t budget, RecoveryReport& rep, std::string& next, bool& end) {
    Store& s = store_;
    int rc;
    CursorPtr c = open_cursor(t, s.recipients_, rc);
    if (!c) return rc;
    Raw bad;
    std::vector<std::string> orphans;
    uint64_t last = 0;
    bool last_exists = false;
    std::size_t n = 0;
    rc = walk(c.get(), from_, [&](std::string_view k, std::string_view v) {
        uint64_t msgid;
        uint32_t idx;
        bool key_ok = parse_recipient_key(k, msgid, idx);
        if (key_ok && !ours(msgid)) return kWalkStop;
        if (n++ == budget) {
            next.assign(k);
            end = false;
            return kWalkStop;
        }
        if (!key_ok) {
            LOG_ERROR("event=corrupt record=recipient key_len=%zu reason=\"bad key\" action=quarantined", k.size());
            bad.emplace_back(k, v);
            return 0;
        }
        if (msgid != last || n == 1) {
            last = msgid;
            MDB_val val;
            int g = db_get(t, s.messages_, message_key(msgid).view(), val);
            if (g && g != MDB_NOTFOUND) return g;
            last_exists = g == 0;
        }
        if (!last_exists) orphans.emplace_back(k);
        return 0;
    });
    if (rc) return rc;
    c.reset();
    if ((rc = quarantine_all(t, 'r', s.recipients_, bad, rep))) return rc;
    for (auto& key : orphans) {
        if ((rc = db_del(t, s.recipients_, key))) return rc;
        rep.orphan_recipients++;
    }
    if (!orphans.empty()) LOG_WARN("event=orphan_recipients_removed count=%zu", orphans.size());
    return 0;
}

// Every schedule entry of an earlier run points at a recipient record that is scheduled at exactly that
// time, of a message that is not corrupt; any other entry is dropped.
int Recovery::schedule_slice(MDB_txn* t, std::size_t budget, RecoveryReport& rep, std::string& next, bool& end) {
    Store& s = store_;
    int rc;
    CursorPtr c = open_cursor(t, s.schedule_, rc);
    if (!c) return rc;
    std::vector<std::string> stale;
    std::size_t n = 0;
    uint64_t cached = 0;
    bool cached_live = false;
    rc = walk(c.get(), from_, [&](std::string_view k, std::string_view) {
        if (n++ == budget) {
            next.assign(k);
            end = false;
            return kWalkStop;
        }
        uint64_t time, msgid;
        uint32_t idx;
        if (!parse_schedule_key(k, time, msgid, idx)) {
            stale.emplace_back(k);
            return 0;
        }
        if (!ours(msgid) || busy(msgid)) return 0;
        MDB_val val;
        int g = db_get(t, s.recipients_, recipient_key(msgid, idx).view(), val);
        if (g && g != MDB_NOTFOUND) return g;
        RecipientRecord rec;
        std::string err;
        bool live = g == 0 && decode(from_val(val), rec, err) && rec.scheduled() && rec.next_attempt == time;
        if (live && (msgid != cached || n == 1)) {
            cached = msgid;
            g = db_get(t, s.messages_, message_key(msgid).view(), val);
            if (g && g != MDB_NOTFOUND) return g;
            MessageRecord m;
            cached_live = g == 0 && decode(from_val(val), m, err) && m.state == MessageState::active;
        }
        if (!live || !cached_live) stale.emplace_back(k);
        return 0;
    });
    if (rc) return rc;
    c.reset();
    for (auto& key : stale)
        if ((rc = db_del(t, s.schedule_, key))) return rc;
    rep.schedule_dropped += stale.size();
    if (!stale.empty()) LOG_WARN("event=schedule_repaired dropped=%zu reason=\"entries that point at nothing due\"", stale.size());
    return 0;
}

// Body files of an earlier run that no message record refers to: written, then never committed (a
// crash, or a pre-created file of the body pool), or left by a deletion that did not finish.
bool Recovery::bodies_slice(std::size_t budget, std::string& err) {
    if (!dir_) {
        dir_.reset(opendir(body_dir_.c_str()));
        if (!dir_) {
            err = "opendir " + body_dir_ + ": " + strerror(errno);
            return false;
        }
    }
    int rc;
    Txn t(store_.env_.get(), MDB_RDONLY, rc);
    if (rc) {
        err = "recovery (bodies): " + Store::error_text(rc);
        return false;
    }
    for (std::size_t n = 0; n < budget; n++) {
        errno = 0;
        struct dirent* e = readdir(dir_.get());
        if (!e) {
            if (errno) {
                err = "readdir " + body_dir_ + ": " + strerror(errno);
                return false;
            }
            dir_.reset();
            phase_ = Phase::done;
            return true;
        }
        std::string_view name = e->d_name;
        if (name == "." || name == ".." || name == kSpaceProbe) continue;
        auto id = parse_qid(name);
        if (!id) {
            LOG_WARN("event=unknown_spool_file name=\"%s\" action=ignored", log::safe(name).c_str());
            continue;
        }
        if (!ours(*id)) continue;
        MDB_val val;
        int g = db_get(t.get(), store_.messages_, message_key(*id).view(), val);
        if (g == 0) continue;
        if (g != MDB_NOTFOUND) {
            err = "recovery (bodies): " + Store::error_text(g);
            return false;
        }
        if (unlinkat(dirfd(dir_.get()), e->d_name, 0) == 0) {
            LOG_DEBUG("event=orphan_body_removed qid=%s", format_qid(*id).c_str());
            rep_.orphan_bodies++;
        }
    }
    return true;
}

}  // namespace mta::queue
