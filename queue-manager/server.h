// QueueServer: the mta-queue event loop. Owns the peer links (master, smtpd, smtp, local), the group
// commit of new messages and delivery results, the in-memory active set and per-destination dispatch.
// Trusts no peer: any malformed message ends the process (exit 2) so the master restarts it.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/event_ptr.h"
#include "common/ipc.h"
#include "common/role.h"
#include "queue-manager/admin.h"
#include "queue-manager/body_pool.h"
#include "queue-manager/envelope.h"
#include "queue-manager/policy.h"
#include "queue-manager/route_tables.h"
#include "queue-manager/store.h"

namespace mta::queue {

struct Clock {
    std::function<uint64_t()> now;       // unix seconds
    std::function<double()> jitter;      // uniform in [-1, 1]
};
Clock system_clock();

class QueueServer final : public daemon::MasterHandler {
public:
    static constexpr std::size_t kBatchCommits = 256;       // flush a group commit at once beyond this
    static constexpr std::size_t kBatchRecipients = 20000;
    static constexpr std::size_t kLinkInflight = 100;       // deliver messages in flight per deliverer link
    static constexpr std::size_t kActiveLimit = 20000;      // recipients held in memory for delivery
    static constexpr std::size_t kJobRecipients = wire::kMaxDeliverRecipients;
    static constexpr std::size_t kJobBytes = 200 * 1024;
    static constexpr long kResultDelayUsec = 20000;         // results wait at most this for a commit
    static constexpr uint64_t kLinkLossRetry = 5;           // seconds, after a deliverer went away
    static constexpr std::size_t kPoolLow = 128, kPoolBatch = 256;  // pre-created body files
    static constexpr std::size_t kSlowStartWindow = 2;      // first concurrency of a remote destination
    static constexpr unsigned kDeadAfter = 3;               // connection failures in a row -> dead

    QueueServer(event_base* base, Config cfg, Store& store, Clock clock, std::string body_dir = "body");
    ~QueueServer();
    // Opens the body directory and starts scheduling. False with err if the spool is unusable.
    bool start(std::string& err);
    void attach_master(UniqueFd fd);

private:
    struct Peer {
        uint64_t id = 0;
        Role role = Role::smtpd;
        uint64_t instance = 0;
        std::unique_ptr<ipc::Link> link;
        bool closed = false;                                   // waiting for drop_peer()
        std::size_t inflight = 0;                              // deliver messages outstanding
        std::map<std::pair<uint64_t, uint32_t>, uint64_t> rcpt_jobs;  // (msgid, index) -> job id
    };
    enum class RcptStage : uint8_t { ready, inflight, result_pending };
    struct ActiveRcpt {
        RecipientRecord rec;
        RcptStage stage = RcptStage::ready;
        bool hold_after = false;    // held by mtaqueue while in flight: a deferral of this attempt becomes held
        bool delete_after = false;  // deleted by mtaqueue while in flight: a deferral of this attempt deletes it
    };
    struct ActiveMessage {
        MessageRecord msg;
        std::map<uint32_t, ActiveRcpt> rcpts;
        uint32_t records_left = 0;   // recipient records still in the store (as of pending batch)
        bool corrupt = false;
    };
    struct WaitingJob {
        uint64_t msgid;
        std::vector<uint32_t> indices;
    };
    struct Destination {
        std::string nexthop;
        std::string tls_level;  // from smtp_tls_policy_map, "" = smtp_tls_level
        bool local = false;
        std::deque<WaitingJob> waiting;
        std::size_t inflight = 0;
        bool blocked = false;
    };
    struct Job {
        uint64_t msgid = 0;
        std::string dest;
        uint64_t peer = 0;
        std::size_t remaining = 0;
        bool answered = false, delivered = false, conn_failed = false;  // outcome so far, for slow start and dead marking
        std::string conn_error;
    };
    // Per-destination delivery health, kept while the destination has work or is dead.
    struct DestHealth {
        std::size_t window = kSlowStartWindow;  // concurrency allowed now (slow start)
        unsigned conn_failures = 0;             // consecutive jobs that could not connect
        uint64_t dead_until = 0;
        std::string last_error;
    };
    struct CommitItem {
        uint64_t peer = 0, reqid = 0, msgid = 0;
        MessageRecord msg;
        std::vector<RecipientRecord> rcpts;
        std::string maildrop;  // file name in maildrop/ to remove once committed ("" for smtpd mail)
    };

    // server.cpp: links and the smtpd flows
    // daemon::MasterHandler
    void on_peer(Role role, uint64_t instance, UniqueFd fd) override;
    void on_reload(Config next, const wire::Config& conf) override;
    void on_stop() override;
    void on_request(ipc::Message& m) override;  // admin_request
    [[noreturn]] void on_master_closed() override;

    void on_peer_message(uint64_t peer_id, ipc::Message& m);
    void on_peer_close(uint64_t peer_id, bool malformed, const std::string& why);
    void on_body_open(Peer& p, ipc::Message& m);
    void on_commit(Peer& p, ipc::Message& m);
    void on_abort(Peer& p, ipc::Message& m);
    void top_up_pool();
    [[noreturn]] void exit_now(int code);
    void reply_fail(Peer& p, uint64_t reqid, int code, const char* enhanced, const std::string& text);
    [[noreturn]] void malformed(const std::string& who, const std::string& why) { daemon::malformed(who, why); }
    [[noreturn]] void malformed(Role who, const std::string& why) { daemon::malformed(who, why); }
    void maybe_finish_stop();
    Peer* find_peer(uint64_t id);
    void retire_peer(Peer& p);
    void drop_peer(uint64_t id);

    // batch.cpp: group commit
    void arm_flush(bool urgent = false);
    void flush();
    void flush_failed(int rc, std::vector<CommitItem>& commits);
    void after_results(const std::vector<Op>& ops);
    void after_commits(std::vector<CommitItem>& commits);

    // admin_ops.cpp: mtaqueue/mailq requests relayed by mtad
    void on_admin(ipc::Message& m);
    std::string run_admin(const AdminCommand& cmd, std::optional<uint64_t> only_uid);
    std::string admin_change(const AdminCommand& cmd, std::vector<MessageView>& msgs, uint64_t now);
    void forget_waiting(const std::set<std::pair<uint64_t, uint32_t>>& rcpts);
    bool rcpt_busy(uint64_t msgid, uint32_t index) const;
    bool mark_inflight(uint64_t msgid, uint32_t index, const std::string& verb);
    static void hold_if_asked(const std::string& qid, const ActiveRcpt& ar, RecipientRecord& rec);

    // destinations.cpp: slow start and dead-destination back-off
    std::size_t dest_window(const std::string& key, const Destination& d);
    void note_job_outcome(const Job& job);
    bool defer_if_dead(Destination& d, const std::string& key);
    void revive_destinations();

    // maildrop.cpp/pickup.cpp: sendmail submissions
    bool open_maildrop(std::string& err);
    bool open_space_probe(std::string& err);
    void send_space_probe(Peer& p);
    void scan_maildrop();
    void pick_up(const std::string& name);
    void maildrop_bad(const std::string& name, const std::string& why);

    // bounce.cpp: DSNs for result ops that ask for one; returns the new messages' ids
    std::vector<uint64_t> make_notifications(const std::vector<Op>& results, std::vector<Op>& out);
    std::string read_body_prefix(uint64_t msgid, std::size_t limit);

    // dispatch.cpp: active set, destinations, results
    void on_deliver_result(Peer& p, ipc::Message& m);
    void record_result(uint64_t msgid, ActiveMessage& am, ActiveRcpt& ar, uint32_t index, const RcptResult& r,
                       const std::string& relay);
    bool delay_warning_due(const MessageRecord& m, const RecipientRecord& r, uint64_t now) const;
    void activate(uint64_t msgid, ActiveMessage& am, const std::vector<uint32_t>& indices);
    void pump(const std::string& key);
    void pump_blocked();
    void pump_all();
    bool send_job(Destination& d, const std::string& key, Peer& p, WaitingJob& wj);
    Peer* pick_peer(const Destination& d);
    void finish_job(uint64_t job_id);
    void requeue_peer_jobs(Peer& p);
    void corrupt_message(uint64_t msgid, const char* why);
    void release_rcpt(uint64_t msgid, uint32_t index);
    void scan_store();
    void wake_at(uint64_t t);
    void on_timer();
    bool is_active(uint64_t msgid, uint32_t index) const;

    event_base* base_;
    Config cfg_;
    RouteTableSet tables_;  // transport_map and smtp_tls_policy_map, as published by mtad
    RetryPolicy policy_;
    Store& store_;
    Clock clock_;
    std::string body_dir_;
    UniqueFd body_dir_fd_;
    UniqueFd space_probe_;  // O_PATH, body/space-probe (kSpaceProbe)
    std::unique_ptr<BodyPool> pool_;

    std::unique_ptr<daemon::MasterLink> master_;
    std::map<std::pair<Role, uint64_t>, uint64_t> peer_ids_;  // (role, instance) -> peer id
    std::unordered_map<uint64_t, std::unique_ptr<Peer>> peers_;
    uint64_t next_peer_id_ = 1, next_job_id_ = 1;
    std::unordered_map<uint64_t, uint64_t> pending_bodies_;  // msgid -> smtpd peer id

    std::vector<CommitItem> commits_;
    std::size_t commit_rcpts_ = 0;
    std::vector<Op> result_ops_;
    unsigned result_failures_ = 0;
    EventPtr flush_ev_, timer_ev_, stop_ev_, maildrop_ev_;
    daemon::Reaper reaper_;  // closed peers are dropped from the loop, then a pending stop may finish
    UniqueFd maildrop_fd_;
    std::set<std::string> maildrop_busy_;  // picked up, commit pending
    bool flush_armed_ = false, flush_urgent_ = false;
    uint64_t wake_at_ = 0;
    bool backlog_ = false;
    bool stopping_ = false;

    std::unordered_map<uint64_t, ActiveMessage> active_;
    std::size_t active_rcpts_ = 0;
    std::unordered_map<std::string, Destination> dests_;
    std::deque<std::string> blocked_;
    std::unordered_map<uint64_t, Job> jobs_;
    std::unordered_map<std::string, DestHealth> health_;
    std::unordered_map<uint64_t, bool> dead_msgids_;  // corrupt or missing: never scanned again this run
};

}  // namespace mta::queue
