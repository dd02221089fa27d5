// QueueStore: the durable queue in LMDB (sole writer, full sync). Named databases: meta (id high-water,
// schema), messages, recipients, schedule (time+msgid+index, earliest first), destinations (the
// scheduler's state that outlives a restart, key "KIND/NAME" -> bytes its owner encodes: "warmup/ADDRESS"
// for SourcePools), corrupt (quarantined raw records), suppression (lower-cased address -> SuppressionRecord). Trusts nothing it reads back: undecodable records are quarantined.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "queue-manager/lmdb_util.h"
#include "queue-manager/records.h"

namespace mta::queue {

// One change inside a write transaction; a batch of them commits atomically.
struct Op {
    enum class Kind : uint8_t {
        put_message,       // msg under msgid
        put_recipient,     // rcpt under msgid+index; old schedule entry (if had_schedule) replaced
        delete_recipient,  // and its schedule entry (if had_schedule)
        delete_message,    // the message record (its recipients are gone already)
        mark_corrupt,      // message -> corrupt state (quarantined if undecodable), schedule entries dropped
        drop_schedule,     // a stale schedule entry (old_next, msgid, index)
        put_suppression,   // sup under address
        delete_suppression,
        put_state,         // value under address in destinations
        delete_state,
    };
    Kind kind = Kind::put_message;
    uint64_t msgid = 0;
    uint32_t index = 0;
    bool had_schedule = false;
    uint64_t old_next = 0;
    MessageRecord msg;
    RecipientRecord rcpt;
    std::string address;  // put/delete_suppression: the key (lower-cased); put/delete_state: the key
    SuppressionRecord sup;
    std::string value;    // put_state
    // Not stored: a result op that also asks for a DSN about rcpt (msg then holds the original
    // message's record). The server turns these into new queued messages in the same transaction.
    enum class Dsn : uint8_t { none, failure, delay, success };
    Dsn dsn = Dsn::none;
};

using RcptList = std::vector<std::pair<uint32_t, RecipientRecord>>;

struct ScanResult {
    std::vector<uint64_t> msgids;  // distinct, in schedule order
    std::size_t entries = 0;       // due entries collected
    bool more = false;             // stopped at the limit: more due entries may exist
    uint64_t next_time = 0;        // time of the first entry after now (0: none)
};

// What recovery (recovery.h) found and repaired.
struct RecoveryReport {
    std::size_t messages = 0, recipients = 0, scheduled = 0;
    std::size_t corrupt = 0, quarantined = 0, orphan_bodies = 0, orphan_recipients = 0, finished = 0;
    std::size_t schedule_added = 0, schedule_dropped = 0;  // entries a scheduled recipient lacked / stale ones
    void add(const RecoveryReport& o);
};

// Visits the recipient records of one message in index order: fn(index, key, value) as for walk().
template <class Fn>
int walk_recipients(MDB_cursor* c, uint64_t msgid, Fn&& fn) {
    Key start = recipient_key(msgid, 0);
    return walk(c, start.view(), [&](std::string_view k, std::string_view v) {
        uint64_t id;
        uint32_t idx;
        if (!parse_recipient_key(k, id, idx) || id != msgid) return kWalkStop;
        return fn(idx, k, v);
    });
}

// Empty when fd is a plain file of the size recorded at commit; otherwise why it is not (the message is
// corrupt: a truncated or appended-to body is never delivered as if complete).
std::string body_fd_problem(int fd, uint64_t recorded_size);

class Store {
public:
    enum class Load { ok, missing, corrupt };
    using LoadFn = std::function<void(uint64_t msgid, Load, MessageRecord&, RcptList&)>;

    bool open(const std::string& dir, std::string& err, std::size_t initial_map = std::size_t(256) << 20);
    bool is_open() const { return env_ != nullptr; }

    // A fresh id, never handed out before (high-water mark persisted in blocks of kIdBlock).
    bool allocate_id(uint64_t& id, std::string& err);
    static constexpr uint64_t kIdBlock = 4096;

    // Applies all ops in one write transaction (grows the map on MDB_MAP_FULL). 0 or an error code.
    int apply(const std::vector<Op>& ops);
    static bool is_space_error(int rc);
    static std::string error_text(int rc);

    // Due schedule entries (time <= now) not skipped, up to limit entries.
    ScanResult scan_due(uint64_t now, std::size_t limit, const std::function<bool(uint64_t, uint32_t)>& skip);
    // Loads each message with all its recipient records, in one read transaction.
    void load_messages(const std::vector<uint64_t>& msgids, const LoadFn& fn);

    // Up to `limit` messages (active or corrupt) from id `from` on, with their recipient records, in key
    // order, in one read transaction: the id to go on from, 0 at the end. Undecodable records are
    // skipped (recovery or mark_corrupt quarantines them). Admin requests walk the queue this way, a
    // slice per loop round.
    uint64_t for_each_message_from(uint64_t from, std::size_t limit,
                                   const std::function<void(uint64_t msgid, MessageRecord&, RcptList&)>& fn);

    // The whole of recovery (recovery.h) at once, for tests and tools; mta-queue runs it in slices.
    bool recover(const std::string& body_dir, RecoveryReport& rep, std::string& err);
    // Ids below this one were handed out by earlier runs (recovery looks only at those).
    uint64_t first_id_this_run() const { return first_id_this_run_; }

    // The suppression list. find: true when `address` (lower-cased) has an entry, expired or not; an
    // undecodable entry counts as none (and is logged).
    bool find_suppression(const std::string& address, SuppressionRecord& out);
    void for_each_suppression(const std::function<void(const std::string& address, const SuppressionRecord&)>& fn);
    // State entries (db destinations) whose key starts with `prefix`, in key order.
    void for_each_state(std::string_view prefix, const std::function<void(std::string_view key, std::string_view value)>& fn);

    // Metrics: up to `limit` recipient records from (msgid, index) on, in key order, in one read
    // transaction; undecodable ones are skipped. Returns false at the end, else sets the next start.
    bool walk_recipients_from(uint64_t& msgid, uint32_t& index, std::size_t limit,
                              const std::function<void(uint64_t, uint32_t, const RecipientRecord&)>& fn);
    // The arrival time of the oldest message (ids grow with time), 0 when the queue is empty.
    uint64_t oldest_arrival();

    // For tests and tools.
    std::size_t count(const char* db);
    std::size_t map_size() const;
    // Reader slots of dead processes that open() freed (mdb_reader_check).
    int stale_readers_cleared() const { return stale_readers_; }

private:
    friend class Recovery;
    int write_txn(const std::function<int(MDB_txn*)>& body);
    int apply_op(MDB_txn* t, const Op& op);
    int mark_corrupt(MDB_txn* t, uint64_t msgid);
    int quarantine(MDB_txn* t, char db, std::string_view key, std::string_view value);

    EnvPtr env_;
    int stale_readers_ = 0;
    MDB_dbi meta_ = 0, messages_ = 0, recipients_ = 0, schedule_ = 0, destinations_ = 0, corrupt_ = 0,
            suppression_ = 0;
    uint64_t next_id_ = 1, id_limit_ = 1, first_id_this_run_ = 1;
};

}  // namespace mta::queue
