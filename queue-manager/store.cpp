// QueueStore: LMDB environment, id allocation, batched write transactions and schedule scans.
// Every write goes through write_txn, which grows the map on MDB_MAP_FULL and retries.
#include "queue-manager/store.h"

#include "common/spool_format.h"

#include <cerrno>
#include <cstring>
#include <sys/stat.h>
#include <unordered_set>

#include "common/fault.h"
#include "common/log.h"

namespace mta::queue {
namespace {

constexpr std::size_t kMaxMapSize = std::size_t(1) << 40;
constexpr std::string_view kMetaNextId = "next_id";
constexpr std::string_view kMetaSchema = "schema";
constexpr uint64_t kSchemaVersion = 1;
constexpr std::size_t kMaxScanMessages = 1024;

std::string le64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; i++) s[std::size_t(i)] = char((v >> (8 * i)) & 0xff);
    return s;
}
bool parse_le64(std::string_view s, uint64_t& v) {
    if (s.size() != 8) return false;
    v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | uint8_t(s[std::size_t(i)]);
    return true;
}

}  // namespace

bool Store::open(const std::string& dir, std::string& err, std::size_t initial_map) {
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        err = "mkdir " + dir + ": " + strerror(errno);
        return false;
    }
    // LMDB silently makes a fresh, empty queue out of an empty data.mdb: refuse instead, as for garbage.
    std::string data = dir + "/data.mdb";
    struct stat st;
    if (::stat(data.c_str(), &st) == 0 && (!S_ISREG(st.st_mode) || st.st_size == 0)) {
        err = data + (S_ISREG(st.st_mode) ? " is empty" : " is not a plain file") +
              ": the queue database is damaged; restore it, or move it away to start with an empty queue";
        return false;
    }
    MDB_env* e = nullptr;
    int rc = mdb_env_create(&e);
    if (rc) { err = error_text(rc); return false; }
    EnvPtr env(e);
    if ((rc = mdb_env_set_maxdbs(e, 8)) || (rc = mdb_env_set_mapsize(e, initial_map)) ||
        (rc = mdb_env_open(e, dir.c_str(), 0, 0600))) {
        err = "lmdb open " + data + ": " + error_text(rc);
        return false;
    }
    // Reader slots of processes that died holding a read transaction (a killed mta-queue, an mtaqueue
    // tool) would pin old pages for ever and let the map grow: free them before anything else.
    int stale = 0;
    if (mdb_reader_check(e, &stale) == 0 && stale > 0) LOG_INFO("event=lmdb_stale_readers cleared=%d", stale);
    stale_readers_ = stale;
    Txn t(e, 0, rc);
    if (rc) { err = error_text(rc); return false; }
    struct { const char* name; MDB_dbi* dbi; } dbs[] = {{"meta", &meta_}, {"messages", &messages_},
        {"recipients", &recipients_}, {"schedule", &schedule_}, {"destinations", &destinations_},
        {"corrupt", &corrupt_}, {"suppression", &suppression_}};
    for (auto& d : dbs)
        if ((rc = mdb_dbi_open(t.get(), d.name, MDB_CREATE, d.dbi))) { err = error_text(rc); return false; }
    MDB_val k = to_val(kMetaSchema), v;
    rc = mdb_get(t.get(), meta_, &k, &v);
    uint64_t schema = 0;
    if (rc == MDB_NOTFOUND) {
        if ((rc = db_put(t.get(), meta_, kMetaSchema, le64(kSchemaVersion)))) { err = error_text(rc); return false; }
    } else if (rc || !parse_le64(from_val(v), schema) || schema != kSchemaVersion) {
        err = "unsupported queue schema in " + dir;
        return false;
    }
    // The format mark (common/spool_format.h): refuse a newer one untouched, else mark it ours.
    uint64_t format = kQueueFormatUnmarked;
    k = to_val(kMetaFormatKey);
    rc = mdb_get(t.get(), meta_, &k, &v);
    if (rc == 0 && !parse_le64(from_val(v), format)) { err = "bad queue format mark in " + dir; return false; }
    if (format > kQueueFormat) {
        err = queue_format_refusal(format, dir);
        return false;
    }
    if ((rc == MDB_NOTFOUND || format < kQueueFormat) && (rc = db_put(t.get(), meta_, kMetaFormatKey, le64(kQueueFormat)))) {
        err = error_text(rc);
        return false;
    }
    uint64_t hw = 1;
    k = to_val(kMetaNextId);
    if (mdb_get(t.get(), meta_, &k, &v) == 0 && !parse_le64(from_val(v), hw)) { err = "bad id high-water"; return false; }
    // Belt and braces: never below the newest message actually stored.
    int crc;
    CursorPtr c = open_cursor(t.get(), messages_, crc);
    uint64_t last = 0;
    if (c && mdb_cursor_get(c.get(), &k, &v, MDB_LAST) == 0 && parse_message_key(from_val(k), last) && last >= hw)
        hw = last + 1;
    c.reset();
    if ((rc = t.commit())) { err = error_text(rc); return false; }
    next_id_ = id_limit_ = first_id_this_run_ = hw < 1 ? 1 : hw;
    env_ = std::move(env);
    return true;
}

bool Store::allocate_id(uint64_t& id, std::string& err) {
    if (next_id_ >= id_limit_) {
        uint64_t limit = next_id_ + kIdBlock;
        int rc = write_txn([&](MDB_txn* t) { return db_put(t, meta_, kMetaNextId, le64(limit)); });
        if (rc) { err = error_text(rc); return false; }
        id_limit_ = limit;
    }
    id = next_id_++;
    return true;
}

bool Store::is_space_error(int rc) { return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT; }

std::string Store::error_text(int rc) { return mdb_strerror(rc); }

std::size_t Store::map_size() const {
    MDB_envinfo info;
    mdb_env_info(env_.get(), &info);
    return info.me_mapsize;
}

int Store::write_txn(const std::function<int(MDB_txn*)>& body) {
    for (int tries = 0;; tries++) {
        int rc;
        {
            Txn t(env_.get(), 0, rc);
            if (rc == 0) rc = body(t.get());
            if (rc == 0) rc = t.commit();
        }
        if (rc != MDB_MAP_FULL || tries >= 4) return rc;
        std::size_t size = map_size();
        if (size >= kMaxMapSize) return rc;
        if (int g = mdb_env_set_mapsize(env_.get(), size * 2)) return g;
    }
}

int Store::apply(const std::vector<Op>& ops) {
    return write_txn([&](MDB_txn* t) {
        for (auto& op : ops)
            if (int rc = apply_op(t, op)) return rc;
        MTA_CRASH_POINT("queue.txn.before_commit");  // every op written, the transaction not committed
        return 0;
    });
}

int Store::apply_op(MDB_txn* t, const Op& op) {
    int rc = 0;
    switch (op.kind) {
    case Op::Kind::put_message:
        return db_put(t, messages_, message_key(op.msgid).view(), encode(op.msg));
    case Op::Kind::put_recipient:
        if (op.had_schedule && (rc = db_del(t, schedule_, schedule_key(op.old_next, op.msgid, op.index).view())))
            return rc;
        if ((rc = db_put(t, recipients_, recipient_key(op.msgid, op.index).view(), encode(op.rcpt)))) return rc;
        if (op.rcpt.scheduled())
            rc = db_put(t, schedule_, schedule_key(op.rcpt.next_attempt, op.msgid, op.index).view(), {});
        return rc;
    case Op::Kind::delete_recipient:
        if (op.had_schedule && (rc = db_del(t, schedule_, schedule_key(op.old_next, op.msgid, op.index).view())))
            return rc;
        return db_del(t, recipients_, recipient_key(op.msgid, op.index).view());
    case Op::Kind::delete_message:
        return db_del(t, messages_, message_key(op.msgid).view());
    case Op::Kind::mark_corrupt:
        return mark_corrupt(t, op.msgid);
    case Op::Kind::drop_schedule:
        return db_del(t, schedule_, schedule_key(op.old_next, op.msgid, op.index).view());
    case Op::Kind::put_suppression:
        return db_put(t, suppression_, op.address, encode(op.sup));
    case Op::Kind::delete_suppression:
        return db_del(t, suppression_, op.address);
    case Op::Kind::put_state:
        return db_put(t, destinations_, op.address, op.value);
    case Op::Kind::delete_state:
        return db_del(t, destinations_, op.address);
    }
    return EINVAL;
}

int Store::quarantine(MDB_txn* t, char db, std::string_view key, std::string_view value) {
    std::string k(1, db);
    k.append(key);
    return db_put(t, corrupt_, k, value);
}

int Store::mark_corrupt(MDB_txn* t, uint64_t msgid) {
    Key mk = message_key(msgid);
    MDB_val k = to_val(mk.view()), v;
    int rc = mdb_get(t, messages_, &k, &v);
    if (rc == 0) {
        MessageRecord m;
        std::string err;
        if (decode(from_val(v), m, err)) {
            m.state = MessageState::corrupt;
            rc = db_put(t, messages_, mk.view(), encode(m));
        } else {
            std::string raw(from_val(v));
            rc = quarantine(t, 'm', mk.view(), raw);
            if (rc == 0) rc = db_del(t, messages_, mk.view());
        }
        if (rc) return rc;
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    // Its recipients leave the schedule (undecodable ones are quarantined).
    CursorPtr c = open_cursor(t, recipients_, rc);
    if (!c) return rc;
    return walk_recipients(c.get(), msgid, [&](uint32_t idx, std::string_view rk, std::string_view rv) {
        RecipientRecord r;
        std::string err;
        if (decode(rv, r, err))
            return r.scheduled() ? db_del(t, schedule_, schedule_key(r.next_attempt, msgid, idx).view()) : 0;
        // Copies: the put below may move the pages rk and rv point into.
        std::string raw(rv), key(rk);
        int e = quarantine(t, 'r', key, raw);
        return e ? e : mdb_cursor_del(c.get(), 0);
    });
}

ScanResult Store::scan_due(uint64_t now, std::size_t limit, const std::function<bool(uint64_t, uint32_t)>& skip) {
    ScanResult res;
    int rc;
    Txn t(env_.get(), MDB_RDONLY, rc);
    if (rc) return res;
    CursorPtr c = open_cursor(t.get(), schedule_, rc);
    if (!c) return res;
    uint64_t last_msgid = 0;
    std::unordered_set<uint64_t> seen;
    walk(c.get(), {}, [&](std::string_view k, std::string_view) {
        uint64_t time, msgid;
        uint32_t idx;
        if (!parse_schedule_key(k, time, msgid, idx)) return 0;  // recovery rebuilds the index
        if (time > now) { res.next_time = time; return kWalkStop; }
        if (skip(msgid, idx)) return 0;
        if (res.entries >= limit) { res.more = true; return kWalkStop; }
        res.entries++;
        if (msgid != last_msgid && seen.insert(msgid).second) {
            if (res.msgids.size() >= kMaxScanMessages) { res.more = true; return kWalkStop; }
            res.msgids.push_back(msgid);
        }
        last_msgid = msgid;
        return 0;
    });
    return res;
}

void Store::load_messages(const std::vector<uint64_t>& msgids, const LoadFn& fn) {
    int rc;
    Txn t(env_.get(), MDB_RDONLY, rc);
    if (rc) return;
    CursorPtr c = open_cursor(t.get(), recipients_, rc);
    if (!c) return;
    for (uint64_t msgid : msgids) {
        MessageRecord m;
        RcptList rcpts;
        std::string err;
        Key mk = message_key(msgid);
        MDB_val k = to_val(mk.view()), v;
        rc = mdb_get(t.get(), messages_, &k, &v);
        if (rc) { fn(msgid, Load::missing, m, rcpts); continue; }
        bool ok = decode(from_val(v), m, err) && m.state == MessageState::active;
        if (ok)
            walk_recipients(c.get(), msgid, [&](uint32_t idx, std::string_view, std::string_view rv) {
                RecipientRecord r;
                if (!decode(rv, r, err)) { ok = false; return kWalkStop; }
                rcpts.emplace_back(idx, std::move(r));
                return 0;
            });
        fn(msgid, ok ? Load::ok : Load::corrupt, m, rcpts);
    }
}

uint64_t Store::for_each_message_from(uint64_t from, std::size_t limit,
                                      const std::function<void(uint64_t, MessageRecord&, RcptList&)>& fn) {
    int rc;
    Txn t(env_.get(), MDB_RDONLY, rc);
    if (rc) return 0;
    CursorPtr mc = open_cursor(t.get(), messages_, rc);
    CursorPtr rcur = open_cursor(t.get(), recipients_, rc);
    if (!mc || !rcur) return 0;
    Key start = message_key(from);
    std::size_t seen = 0;
    uint64_t next = 0;
    walk(mc.get(), start.view(), [&](std::string_view k, std::string_view v) {
        uint64_t msgid;
        MessageRecord m;
        std::string err;
        if (!parse_message_key(k, msgid)) return 0;
        if (seen++ == limit) {
            next = msgid;
            return kWalkStop;
        }
        if (!decode(v, m, err)) return 0;
        RcptList rcpts;
        walk_recipients(rcur.get(), msgid, [&](uint32_t idx, std::string_view, std::string_view rv) {
            RecipientRecord rec;
            if (decode(rv, rec, err)) rcpts.emplace_back(idx, std::move(rec));
            return 0;
        });
        fn(msgid, m, rcpts);
        return 0;
    });
    return next;
}

bool Store::find_suppression(const std::string& address, SuppressionRecord& out) {
    int rc;
    Txn t(env_.get(), MDB_RDONLY, rc);
    if (rc) return false;
    MDB_val k = to_val(address), v;
    if (mdb_get(t.get(), suppression_, &k, &v) != 0) return false;
    std::string err;
    if (decode(from_val(v), out, err)) return true;
    LOG_WARN("event=suppression_unreadable address=<%s> reason=\"%s\"", log::safe(address).c_str(), err.c_str());
    return false;
}

void Store::for_each_suppression(const std::function<void(const std::string&, const SuppressionRecord&)>& fn) {
    int rc;
    Txn t(env_.get(), MDB_RDONLY, rc);
    if (rc) return;
    CursorPtr c = open_cursor(t.get(), suppression_, rc);
    if (!c) return;
    walk(c.get(), {}, [&](std::string_view k, std::string_view v) {
        SuppressionRecord su;
        std::string err;
        if (decode(v, su, err)) fn(std::string(k), su);
        return 0;
    });
}

void Store::for_each_state(std::string_view prefix, const std::function<void(std::string_view, std::string_view)>& fn) {
    int rc;
    Txn t(env_.get(), MDB_RDONLY, rc);
    if (rc) return;
    CursorPtr c = open_cursor(t.get(), destinations_, rc);
    if (!c) return;
    walk(c.get(), prefix, [&](std::string_view k, std::string_view v) {
        if (k.substr(0, prefix.size()) != prefix) return kWalkStop;
        fn(k, v);
        return 0;
    });
}

bool Store::walk_recipients_from(uint64_t& msgid, uint32_t& index, std::size_t limit,
                                 const std::function<void(uint64_t, uint32_t, const RecipientRecord&)>& fn) {
    int rc;
    Txn t(env_.get(), MDB_RDONLY, rc);
    if (rc) return false;
    CursorPtr c = open_cursor(t.get(), recipients_, rc);
    if (!c) return false;
    Key start = recipient_key(msgid, index);
    std::size_t seen = 0;
    bool more = false;
    walk(c.get(), start.view(), [&](std::string_view k, std::string_view v) {
        uint64_t id;
        uint32_t idx;
        if (!parse_recipient_key(k, id, idx)) return 0;
        if (seen++ == limit) {
            msgid = id;
            index = idx;
            more = true;
            return kWalkStop;
        }
        RecipientRecord rec;
        std::string err;
        if (decode(v, rec, err)) fn(id, idx, rec);
        return 0;
    });
    return more;
}

uint64_t Store::oldest_arrival() {
    int rc;
    Txn t(env_.get(), MDB_RDONLY, rc);
    if (rc) return 0;
    CursorPtr c = open_cursor(t.get(), messages_, rc);
    if (!c) return 0;
    uint64_t arrival = 0;
    walk(c.get(), {}, [&](std::string_view, std::string_view v) {
        MessageRecord m;
        std::string err;
        if (!decode(v, m, err)) return 0;  // quarantined at the next recovery; look at the next one
        arrival = m.arrival;
        return kWalkStop;
    });
    return arrival;
}

std::size_t Store::count(const char* db) {
    struct { const char* name; MDB_dbi dbi; } dbs[] = {{"meta", meta_}, {"messages", messages_},
        {"recipients", recipients_}, {"schedule", schedule_}, {"destinations", destinations_}, {"corrupt", corrupt_},
        {"suppression", suppression_}};
    int rc;
    Txn t(env_.get(), MDB_RDONLY, rc);
    if (rc) return 0;
    for (auto& d : dbs) {
        if (strcmp(d.name, db) != 0) continue;
        MDB_stat st;
        if (mdb_stat(t.get(), d.dbi, &st) == 0) return st.ms_entries;
    }
    return 0;
}

}  // namespace mta::queue
