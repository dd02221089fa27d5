// Scheduler: the destination side of the queue manager (Postfix's qmgr queues and transports). Keeps a
// queue of waiting recipients per destination and the jobs in flight on each deliverer link, and decides
// which recipients may go now and on which link: per-destination concurrency with slow start, the
// dead-destination back-off, a cap per link, and a destination that sticks to one mta-smtp process (its
// connection cache). Learns from each job's outcome. Knows no messages or bodies: it offers a job through
// Hooks::send and the queue server builds and sends it. Per-destination shaping belongs here.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/wire/wire.h"
#include "queue-manager/shaping.h"
#include "queue-manager/source_pools.h"
#include "queue-manager/why.h"

namespace mta::queue {

// Where a recipient goes: mta-local, or mta-smtp to a next hop at a TLS level.
struct Nexthop {
    bool local = false;
    std::string host;       // what the deliverer is given (a job of a group: its first recipient's)
    std::string tls_level;  // from smtp_tls_policy_map, "" = smtp_tls_level
    std::string group;      // Route::group: the destination's name when set (the relayhost)
    DestinationPolicy policy;  // Route::policy (destination_policy), for shaping
    // Source pools for this recipient's message (sender_source_pools, else policy.pools; empty: the
    // smtp_bind_address settings), and the source the scheduler chose for a job (send hook only).
    std::vector<std::string> pools;
    std::string source, source_helo;
    const std::string& name() const { return group.empty() ? host : group; }
};

class Scheduler {
public:
    static constexpr std::size_t kLinkInflight = 100;  // deliver messages in flight per deliverer link
    static constexpr std::size_t kJobRecipients = wire::kMaxDeliverRecipients;
    static constexpr std::size_t kJobBytes = 200 * 1024;
    static constexpr std::size_t kSlowStartWindow = 2;  // first concurrency of a remote destination
    static constexpr unsigned kDeadAfter = 3;           // connection failures in a row -> dead

    struct Hooks {
        // Send these recipients of one message to the link as one job. Returns those actually sent
        // (none: they left the active set meanwhile, or the message turned out corrupt).
        std::function<std::vector<uint32_t>(uint64_t link, uint64_t msgid, const std::vector<uint32_t>& indices,
                                            const Nexthop& to)> send;
        // The destination is dead: defer these waiting recipients without an attempt. Returns how many were.
        std::function<std::size_t(uint64_t msgid, const std::vector<uint32_t>& indices, const std::string& text,
                                  const std::string& relay)> defer;
        std::function<void(uint64_t when)> wake_at;  // look at the schedule again then
        // Shaping: these waiting recipients may not go before `until`; back to the store without an attempt.
        std::function<void(uint64_t msgid, const std::vector<uint32_t>& indices, uint64_t until,
                           const std::string& text)> postpone;
    };
    // How one recipient's attempt went, as far as the destination's health is concerned.
    struct Answered {
        uint64_t job = 0;
        std::string nexthop;
        bool last = false;  // the job has no recipient left in flight: finish() it
    };

    Scheduler(std::function<uint64_t()> now, Hooks hooks);
    // delivery_concurrency caps every destination; a dead destination waits minimal_backoff_time.
    void configure(std::size_t concurrency, uint64_t dead_backoff);
    Shaper& shaper() { return shaper_; }  // destination_slowdown_* (the queue configures it)
    SourcePools& sources() { return sources_; }  // source_addresses (the queue configures and persists it)
    void stop() { stopping_ = true; }  // no new jobs; those in flight finish

    // Deliverer links (ids > 0). A retired link gets no new jobs; link_down() hands back what it had in flight.
    void link_up(uint64_t link, bool local, uint64_t instance);
    void link_retired(uint64_t link);
    void link_down(uint64_t link, const std::function<void(uint64_t msgid, uint32_t index)>& lost);

    // A ready recipient joins its destination's queue; returns the destination to pump().
    std::string add(const Nexthop& to, uint64_t msgid, uint32_t index, std::size_t cost);
    void pump(const std::string& key);
    void pump_all();
    // These recipients left the active set: their waiting entries go, so a re-activated one is routed
    // afresh and never sent twice.
    void forget(const std::set<std::pair<uint64_t, uint32_t>>& rcpts);

    // Job outcome: one recipient answered on a link (nullopt: it is not in flight there), then, once
    // its last recipient has, the job is finished (slow start, dead marking, and the next job goes).
    std::optional<Answered> answered(uint64_t link, uint64_t msgid, uint32_t index, ipc::DeliveryStatus status,
                                     const std::string& text);
    void finish(uint64_t job);
    void revive();  // mtaqueue flush/requeue: every destination counts as alive again

    std::size_t jobs_in_flight() const { return jobs_.size(); }
    std::size_t rcpts_in_flight(uint64_t link) const;
    std::size_t window(const std::string& key) const;  // concurrency a destination is allowed now
    // The destination key a recipient with this next hop joins (add() returns it too).
    static std::string key_of(const Nexthop& to);
    // What holds a destination now, for mtaqueue why (name empty for a local one).
    DestinationView describe(const Nexthop& to) const;
    bool dead(const std::string& key) const;
    // Metrics: every destination with work, by name ("" for local delivery), with its deliveries in flight.
    void for_each_destination(const std::function<void(const std::string& name, std::size_t inflight)>& fn) const;

private:
    struct WaitingJob {
        uint64_t msgid;
        std::vector<uint32_t> indices;
        std::string host;  // Nexthop::host of its first recipient (the recipients of a group differ)
        std::vector<std::string> pools;  // Nexthop::pools (one message: the same for all its recipients)
    };
    struct Destination {
        Nexthop to;
        std::deque<WaitingJob> waiting;
        std::size_t inflight = 0;
        bool blocked = false;  // waits in blocked_ for its link to have room
    };
    struct Job {
        std::string dest;
        uint64_t link = 0;
        std::size_t remaining = 0;
        bool answered = false, delivered = false, conn_failed = false;  // outcome so far
        std::string conn_error;
    };
    // Per-destination delivery health, kept while the destination has work or is dead.
    struct Health {
        std::size_t window = kSlowStartWindow;  // concurrency allowed now (slow start)
        unsigned conn_failures = 0;             // consecutive jobs that could not connect
        uint64_t dead_until = 0;
        std::string last_error;
    };
    struct Link {
        bool local = false;
        uint64_t instance = 0;
        std::size_t inflight = 0;                              // jobs outstanding
        std::map<std::pair<uint64_t, uint32_t>, uint64_t> rcpt_jobs;  // (msgid, index) -> job id
    };

    void note_outcome(const Job& job);
    bool defer_if_dead(Destination& d, const std::string& key);
    void postpone_waiting(Destination& d, const std::string& key, uint64_t first, const std::string& why);
    void note_slowdown(const std::string& key, const std::string& text);
    uint64_t pick_link(const Destination& d) const;  // 0: no link takes this destination's jobs now
    // False when the job found no recipient to send (they left the active set meanwhile).
    bool send_job(Destination& d, const std::string& key, uint64_t link_id, Link& link, WaitingJob& wj,
                  const SourceAddress* source);
    // The job's source pools have nothing for it now: it waits for the next day, or defers (no address).
    void hold_for_source(Destination& d, WaitingJob& wj, const SourcePools::Choice& c);
    void pump_blocked();

    std::function<uint64_t()> now_;
    Hooks hooks_;
    std::size_t concurrency_ = 1;
    uint64_t dead_backoff_ = 300;
    bool stopping_ = false;
    uint64_t next_job_id_ = 1;

    std::unordered_map<uint64_t, Link> links_;
    std::map<uint64_t, uint64_t> local_links_, smtp_links_;  // instance -> link, those that take new jobs
    std::unordered_map<std::string, Destination> dests_;
    std::deque<std::string> blocked_;
    std::unordered_map<uint64_t, Job> jobs_;
    std::unordered_map<std::string, Health> health_;
    Shaper shaper_;
    SourcePools sources_;
};

}  // namespace mta::queue
