// AdminOps: mtaqueue/mailq requests relayed by mtad. Reads the store and changes it in transactions of its
// own (listings and changes without ids a slice per loop round); what it must know of or tell the rest of the queue manager (recipients in flight, the active
// set, destinations, body files) goes through Queue.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/event_ptr.h"
#include "common/ipc.h"
#include "queue-manager/admin.h"
#include "queue-manager/clock.h"
#include "queue-manager/why.h"
#include "queue-manager/store.h"

namespace mta::queue {

class AdminOps {
public:
    using RcptSet = std::set<std::pair<uint64_t, uint32_t>>;
    struct Queue {
        std::function<void()> flush;                                 // write pending results first
        std::function<bool(uint64_t msgid, uint32_t index)> active;   // in the active set
        std::function<bool(uint64_t msgid, uint32_t index)> busy;     // in flight or result pending
        // hold/release/delete of a recipient in flight, applied if its attempt defers; false: not taken
        std::function<bool(uint64_t msgid, uint32_t index, const std::string& verb, uint64_t uid)> mark_inflight;
        std::function<void(const RcptSet&)> withdraw;                // changed in the store: out of memory
        std::function<void(uint64_t msgid, uint32_t n)> records_deleted;
        std::function<void(uint64_t msgid)> removed;                 // the whole message is gone
        std::function<void()> revive;                                // flush/requeue: dead destinations live again
        std::function<void(uint64_t when)> wake_at;                  // scan the schedule then
        std::function<std::string(uint64_t msgid, std::size_t limit)> body_prefix;
        std::function<const ClassCounts&()> class_counts;            // failed attempts by bounce class
        std::function<uint64_t()> suppression_ttl;                   // suppression add without --ttl
        std::function<SourcePools&()> sources;                       // warmup list/set
        std::function<int()> save_state;                             // write changed warm-up state now
        std::function<RetryPolicy()> retry_policy;                    // why: the back-off settings
        // why: the scheduler's view of the destination a recipient of this message routes to now
        std::function<DestinationView(const std::string& rcpt, const MessageRecord& m)> destination;
        std::function<std::string(const std::string& sub, bool json)> tlsrpt;  // tlsrpt list|send
        std::function<void(ipc::Message)> reply;                     // to mtad
    };

    // Times are read and kept in the clock's queue time and shown on the wall clock (clock.h).
    AdminOps(event_base* base, Store& store, Clock clock, Queue queue);
    AdminOps(const AdminOps&) = delete;  // its timer points at it
    AdminOps& operator=(const AdminOps&) = delete;
    // An admin_request or admin_more from mtad; malformed ends the process.
    void on_request(ipc::Message& m);

    static constexpr std::size_t kListSlice = 256;        // messages per read transaction of a listing
    static constexpr std::size_t kListSlices = 8;         // ... at most per loop round (one listing a round)
    static constexpr std::size_t kListChunk = 64 * 1024;  // a round stops once it has this much to send
    static constexpr std::size_t kMaxListings = 64;       // listings and sweeps at once (mtad serves 64 tools)
    static constexpr std::size_t kSweepSlice = 1000;      // messages per transaction of a change to the whole queue

private:
    struct Listing {
        AdminCommand cmd;
        std::optional<uint64_t> only_uid;
        ListFormatter fmt;
        uint64_t now = 0;
        uint64_t next = 0;  // the message id to go on from
        std::string out;    // text not sent yet
    };
    // hold/release/delete/flush/requeue without queue ids: a slice per round, one answer at the end.
    struct ChangeTally {
        std::size_t nmsg = 0, nrcpt = 0, busy = 0, later = 0;
    };
    struct Sweep {
        AdminCommand cmd;
        std::optional<uint64_t> only_uid;
        uint64_t now = 0, uid = 0;
        uint64_t next = 0;  // the message id to go on from
        ChangeTally tally;
    };
    std::optional<MessageView> select(const AdminCommand& cmd, std::optional<uint64_t> only_uid, uint64_t id,
                                      MessageRecord& msg, RcptList& rcpts, uint64_t now) const;
    void start_listing(uint64_t reqid, const AdminCommand& cmd, std::optional<uint64_t> only_uid);
    void on_more(ipc::Message& m);
    void work_round();
    void list_step(uint64_t reqid, Listing& l);
    void sweep_step(uint64_t reqid, Sweep& s);
    void schedule_round();
    std::string run(const AdminCommand& cmd, std::optional<uint64_t> only_uid, uint64_t uid);
    std::string change(const AdminCommand& cmd, std::vector<MessageView>& msgs, uint64_t now, uint64_t uid);
    std::string apply_change(const AdminCommand& cmd, std::vector<MessageView>& msgs, uint64_t now, uint64_t uid,
                             ChangeTally& t);
    static std::string change_text(const std::string& verb, const ChangeTally& t);
    std::string suppression(const AdminCommand& cmd, uint64_t uid, uint64_t now);
    std::string warmup(const AdminCommand& cmd, uint64_t uid, uint64_t now);

    Store& store_;
    Clock clock_;
    Queue q_;
    std::map<uint64_t, Listing> listings_;  // by the request's reqid
    std::map<uint64_t, Sweep> sweeps_;      // by the request's reqid
    std::deque<uint64_t> ready_;            // listings and sweeps to go on with in the next round
    EventPtr work_ev_;
};

}  // namespace mta::queue
