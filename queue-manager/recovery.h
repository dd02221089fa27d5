// Recovery: the startup check of the queue, a slice at a time, while mta-queue already serves mail.
// Trusts nothing it finds from an earlier run: undecodable records are quarantined, messages without
// their committed body become corrupt, finished messages (the deletion was lost) are removed, recipient
// records whose message is gone are removed, a scheduled recipient without its schedule entry gets one
// and a schedule entry that points at nothing due is dropped, and body files nobody refers to go.
//
// Why it may run beside live traffic: LMDB transactions keep the store consistent across any crash, so
// none of this is needed before the first mail is accepted; it repairs only damage (a disk that lied, a
// hand-edited spool). Each slice is one write transaction, and mta-queue is the only writer and
// single-threaded, so a slice sees the committed store as it is. It touches only messages of earlier
// runs (ids below Store::first_id_this_run()) and skips those the caller says are busy (in the active
// set, whose own checks cover them).
#pragma once
#include <cstdint>
#include <dirent.h>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "queue-manager/store.h"

namespace mta::queue {

class Recovery {
public:
    enum class Phase : uint8_t { messages, recipients, schedule, bodies, done };

    Recovery(Store& store, std::string body_dir, std::function<bool(uint64_t msgid)> busy = {});
    // About `budget` records or files checked, their repairs in one transaction. False with err when the
    // store or the body directory failed; the same slice may be tried again.
    bool step(std::size_t budget, std::string& err);
    bool done() const { return phase_ == Phase::done; }
    Phase phase() const { return phase_; }
    static const char* phase_name(Phase p);
    const RecoveryReport& report() const { return rep_; }

private:
    struct DirClose { void operator()(DIR* d) const { closedir(d); } };
    using Raw = std::vector<std::pair<std::string, std::string>>;  // key, value of undecodable records

    int messages_slice(MDB_txn* t, std::size_t budget, RecoveryReport& rep, std::string& next, bool& end);
    int recipients_slice(MDB_txn* t, std::size_t budget, RecoveryReport& rep, std::string& next, bool& end);
    int schedule_slice(MDB_txn* t, std::size_t budget, RecoveryReport& rep, std::string& next, bool& end);
    bool bodies_slice(std::size_t budget, std::string& err);
    // Moves the records to the corrupt db (as Store::quarantine, marked `db`) and out of `from`.
    int quarantine_all(MDB_txn* t, char db, MDB_dbi from, const Raw& records, RecoveryReport& rep);
    bool busy(uint64_t msgid) const { return busy_ && busy_(msgid); }
    bool ours(uint64_t msgid) const { return msgid < first_new_; }  // from an earlier run

    Store& store_;
    std::string body_dir_;
    std::function<bool(uint64_t)> busy_;
    uint64_t first_new_;
    Phase phase_ = Phase::messages;
    std::string from_;  // the key the phase's walk goes on from ("" = its first)
    std::unique_ptr<DIR, DirClose> dir_;
    RecoveryReport rep_;
};

}  // namespace mta::queue
