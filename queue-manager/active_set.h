// ActiveSet: the recipients held in memory for delivery (Postfix's active queue), at most kLimit. Filled
// from new commits and from the store's schedule (a wake timer, then a scan of due entries); turns each
// attempt's result into a store change for the next group commit; keeps corrupt messages out for the
// rest of the run. In-flight state is never written to the store: after a crash every unfinished
// recipient is due again.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/event_ptr.h"
#include "queue-manager/bounce_class.h"
#include "queue-manager/clock.h"
#include "queue-manager/envelope.h"
#include "queue-manager/policy.h"
#include "queue-manager/store.h"

namespace mta::queue {

class ActiveSet {
public:
    static constexpr std::size_t kLimit = 20000;   // recipients held in memory for delivery
    // The schedule scan fills the set up to here: the rest is kept for new mail, so that mail arriving
    // while a backlog is due (after a restart, a destination back from an outage) is not queued behind it.
    static constexpr std::size_t kScanLimit = kLimit * 3 / 4;
    static constexpr uint64_t kLinkLossRetry = 5;  // seconds, after a deliverer went away

    struct Hooks {
        // These recipients of msgid became ready: route them. The message may leave the set as soon
        // as one of them is sent (a body found corrupt), so look each one up afresh.
        std::function<void(uint64_t msgid, const std::vector<uint32_t>& indices)> ready;
        std::function<void(Op)> change;  // a store change for the next group commit
    };
    // What may be sent of a job: the message and those of its recipients that are still ready.
    struct Sendable {
        const MessageRecord* msg = nullptr;
        std::vector<std::pair<uint32_t, const RecipientRecord*>> rcpts;
    };

    ActiveSet(event_base* base, Store& store, Clock clock, Hooks hooks);
    ActiveSet(const ActiveSet&) = delete;  // its timer points at it
    ActiveSet& operator=(const ActiveSet&) = delete;
    void configure(const Config& cfg);  // retry policy, delay_warning_time, suppression
    void stop() { stopping_ = true; }   // takes in nothing more
    void wake_at(uint64_t t);           // scan the schedule then (the earliest asked for wins)

    // A message just committed, all its recipients due now; false when the set is full (the
    // schedule scan takes it later).
    bool admit(uint64_t msgid, MessageRecord msg, std::vector<RecipientRecord> rcpts);

    // Delivery.
    const RecipientRecord& recipient(uint64_t msgid, uint32_t index) const;  // one just made ready
    const MessageRecord& message(uint64_t msgid) const;                      // ... and its message
    Sendable sendable(uint64_t msgid, const std::vector<uint32_t>& indices) const;
    void sent(uint64_t msgid, const std::vector<uint32_t>& indices);
    // An attempt's result (or a settlement without one); a recipient no longer here is only released.
    void settle(uint64_t msgid, uint32_t index, const RcptResult& r, const std::string& relay);
    std::size_t defer_ready(uint64_t msgid, const std::vector<uint32_t>& indices, const std::string& text,
                            const std::string& relay);  // those still ready, deferred without an attempt
    void agent_lost(uint64_t msgid, uint32_t index);     // its deliverer went away mid-attempt
    // Those still ready wait in the store until `until` (shaping): no attempt, not counted as a failure.
    void postpone(uint64_t msgid, const std::vector<uint32_t>& indices, uint64_t until, const std::string& text);
    void corrupt(uint64_t msgid, const std::string& why);
    void release(uint64_t msgid, uint32_t index);        // its store change is committed (or given up)

    // What admin requests need.
    bool holds(uint64_t msgid, uint32_t index) const;
    bool has(uint64_t msgid) const { return active_.count(msgid) != 0; }  // some recipient of it is here
    bool busy(uint64_t msgid, uint32_t index) const;  // in flight or its result not yet committed
    // hold/release/delete of a recipient in flight: applied if the current attempt defers.
    bool mark_inflight(uint64_t msgid, uint32_t index, const std::string& verb, uint64_t uid);
    void records_deleted(uint64_t msgid, uint32_t n);
    void removed(uint64_t msgid) { dead_msgids_.erase(msgid); }
    const ClassCounts& class_counts() const { return counts_; }
    std::size_t size() const { return rcpts_; }  // recipients held now

private:
    enum class Stage : uint8_t { ready, inflight, result_pending };
    struct Rcpt {
        RecipientRecord rec;
        Stage stage = Stage::ready;
        bool hold_after = false;    // held by mtaqueue while in flight: a deferral of this attempt becomes held
        uint64_t hold_by = 0;       // ... by this uid
        bool delete_after = false;  // deleted by mtaqueue while in flight: a deferral of this attempt deletes it
    };
    struct Message {
        MessageRecord msg;
        std::map<uint32_t, Rcpt> rcpts;
        uint32_t records_left = 0;  // recipient records still in the store (as of pending batch)
        bool corrupt = false;
    };

    void scan();
    bool skip(uint64_t msgid, uint32_t index) const;
    void count_outcome(Outcome got, bool deleted, const std::string& relay, uint64_t waited);
    void record_result(uint64_t msgid, Message& m, Rcpt& r, uint32_t index, const RcptResult& res,
                       const std::string& relay);
    bool delay_warning_due(const MessageRecord& m, const RecipientRecord& r, uint64_t now) const;
    void hold_if_asked(const std::string& qid, const Rcpt& r, RecipientRecord& rec) const;
    void suppress(uint64_t msgid, const RecipientRecord& rec, uint64_t now);
    static Op recipient_change(uint64_t msgid, uint32_t index, Rcpt& ar);

    Store& store_;
    Clock clock_;
    Hooks hooks_;
    RetryPolicy policy_;
    uint64_t delay_warning_time_ = 0;
    bool suppress_ = false;          // suppress_hard_bounces
    uint64_t suppression_ttl_ = 0;
    ClassCounts counts_;
    EventPtr timer_ev_;
    uint64_t wake_at_ = 0;
    bool backlog_ = false;  // due recipients were left in the store for lack of room
    bool stopping_ = false;
    std::unordered_map<uint64_t, Message> active_;
    std::size_t rcpts_ = 0;
    std::unordered_set<uint64_t> dead_msgids_;  // corrupt or missing: never scanned again this run
};

}  // namespace mta::queue
