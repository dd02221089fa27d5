// QueueServer: the mta-queue event loop, split by responsibility as Postfix's qmgr is. Each part owns its
// state; parts never touch each other, they reach one another only through the hooks wired here.
//
//   GroupCommit (group_commit.h)  pending new messages and result changes, the flush timer, write
//                                 retries: one syncfs and one LMDB transaction per batch, DSNs included
//   ActiveSet   (active_set.h)    the recipients in memory and their stages, corrupt messages, the
//                                 wake timer and the schedule scan; turns results into store changes
//   Scheduler   (scheduler.h)     per-destination queues, jobs in flight per deliverer link, slow start,
//                                 dead destinations; says which recipients go now and on which link
//   Pickup      (pickup.h)        maildrop/, its scan timer and the files whose commit is pending
//   AdminOps    (admin_ops.h)     mtaqueue/mailq requests relayed by mtad
//
// QueueServer itself owns the links (master, smtpd, smtp, local), the body directory and its pool of
// pre-created files, the smtpd flows (body_open, commit, abort), routing of ready recipients, building
// each deliver message, configuration and the stop sequence. Trusts no peer: any malformed message ends
// the process (exit 2) so the master restarts it.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/event_ptr.h"
#include "common/ipc.h"
#include "common/metrics.h"
#include "common/peer_link.h"
#include "common/role.h"
#include "queue-manager/active_set.h"
#include "queue-manager/admin_ops.h"
#include "queue-manager/body_pool.h"
#include "queue-manager/clock.h"
#include "queue-manager/group_commit.h"
#include "queue-manager/pickup.h"
#include "queue-manager/recovery.h"
#include "queue-manager/route_tables.h"
#include "queue-manager/scheduler.h"
#include "queue-manager/tls_reports.h"
#include "queue-manager/store.h"

namespace mta::queue {

class QueueServer final : public daemon::MasterHandler {
public:
    static constexpr std::size_t kPoolLow = 128, kPoolBatch = 256;  // pre-created body files

    QueueServer(event_base* base, Config cfg, Store& store, Clock clock, std::string body_dir = "body");
    ~QueueServer();
    // Opens the body directory and maildrop, builds the parts and starts scheduling. False with err if
    // the spool is unusable.
    bool start(std::string& err);
    void attach_master(UniqueFd fd);

private:
    struct Peer {
        uint64_t id = 0;
        Role role = Role::smtpd;
        uint64_t instance = 0;
        std::unique_ptr<ipc::Link> link;
        bool closed = false;  // waiting for drop_peer()
    };

    // server.cpp: links, the smtpd flows, the stop sequence
    // daemon::MasterHandler
    void on_peer(Role role, uint64_t instance, UniqueFd fd) override;
    void on_reload(Config next, const wire::Config& conf) override;
    void on_stop() override;
    void on_request(ipc::Message& m) override;  // admin_request; milter_socket/fail for pickup
    void on_milter_socket(ipc::Message& m);
    [[noreturn]] void on_master_closed() override;

    void build_parts();
    void configure_parts();
    void on_peer_message(uint64_t peer_id, ipc::Message& m);
    void on_peer_close(uint64_t peer_id, bool malformed, const std::string& why);
    void on_body_open(Peer& p, ipc::Message& m);
    void on_commit(Peer& p, ipc::Message& m);
    void on_abort(Peer& p, ipc::Message& m);
    void committed(const std::vector<Op>& results, std::vector<CommitItem>& commits, bool notified);
    void refused(const CommitItem& c, bool space);
    bool open_space_probe(std::string& err);
    void send_space_probe(Peer& p);
    void top_up_pool();
    // Recovery (recovery.h) of what earlier runs left, a slice per loop round while mail flows.
    void recovery_step();
    static constexpr std::size_t kRecoverySlice = 2000;
    [[noreturn]] void exit_now(int code);
    void reply_fail(Peer& p, uint64_t reqid, int code, const char* enhanced, const std::string& text);
    void maybe_finish_stop();
    Peer* find_peer(uint64_t id);
    void retire_peer(Peer& p);
    void drop_peer(uint64_t id);

    // dispatch.cpp: between the active set, the scheduler and the deliverers
    void route(uint64_t msgid, const std::vector<uint32_t>& indices);
    std::string suppressed(const std::string& address);
    std::string sender_pools_of(const std::string& sender, const RouteTables& tables, std::vector<std::string>& out);
    void refresh_sources();  // after tables_.refresh()
    RouteTables route_tables();
    // Where a recipient of m would go now (routing as route() does it), as the scheduler sees it.
    DestinationView destination_of(const std::string& rcpt, const MessageRecord& m);
    // The same for the metrics: the destination's name, "local", or the route's verdict ("error").
    std::string destination_name(const std::string& domain, const RouteTables& tables);
    std::string known_mx(const std::string& domain);
    void learn_mx(const std::string& domain, const std::string& mx);
    static constexpr uint64_t kMxMemory = 6 * 3600;
    static constexpr std::size_t kMxMemoryMax = 100000;
    // The scheduler's state that outlives a restart (warm-up counts), read at start and written every
    // kStateSeconds and at stop (store db destinations).
    void load_state();
    int save_state();  // 0 or the store's error code
    static constexpr int kStateSeconds = 5;
    std::vector<uint32_t> send_job(uint64_t link, uint64_t msgid, const std::vector<uint32_t>& indices,
                                   const Nexthop& to);
    void on_deliver_result(Peer& p, ipc::Message& m);

    // queue_metrics.cpp: the gauges of mta_queue_* and mta_destination_*. What needs a walk over every
    // recipient record (deferred and held counts, per destination) comes from a census that walks the
    // store in slices from the event loop, at most every kCensusSeconds and only while metrics are asked for.
    void collect_metrics(metrics::Registry& r);
    void census_step();
    static void on_census(int, short, void* arg);
    static constexpr uint64_t kCensusSeconds = 30;
    static constexpr std::size_t kCensusSlice = 2000;
    struct Census {
        bool running = false;
        uint64_t next_msgid = 0;
        uint32_t next_index = 0;
        uint64_t started = 0, finished = 0;  // clock_.now() of the last start and completion (0: never)
        std::map<std::string, uint64_t> deferred, done_deferred;  // destination -> recipients waiting for a retry
        std::unordered_map<std::string, std::string> dest_of_domain;  // this census' routing, per domain
        uint64_t held = 0, done_held = 0;
    } census_;
    EventPtr census_ev_;

    event_base* base_;
    Config cfg_;
    RouteTableSet tables_;  // transport_map and smtp_tls_policy_map, as published by mtad
    Store& store_;
    Clock clock_;
    std::string body_dir_;
    UniqueFd body_dir_fd_;
    UniqueFd space_probe_;  // O_PATH, body/space-probe (kSpaceProbe)
    std::unique_ptr<BodyPool> pool_;

    std::unique_ptr<daemon::MasterLink> master_;
    std::map<std::pair<Role, uint64_t>, uint64_t> peer_ids_;  // (role, instance) -> peer id
    std::unordered_map<uint64_t, std::unique_ptr<Peer>> peers_;
    uint64_t next_peer_id_ = 1;
    std::unordered_map<uint64_t, uint64_t> pending_bodies_;  // msgid -> smtpd peer id
    EventPtr stop_ev_;
    EventPtr state_ev_;
    TlsReports tlsrpt_;  // TLS-RPT counts of this period
    std::unordered_map<std::string, std::pair<std::string, uint64_t>> known_mx_;  // domain -> (MX host, until)
    uint64_t sources_generation_ = 0;  // tables_.sources_generation() that SourcePools was loaded from
    daemon::Reaper reaper_;  // closed peers are dropped from the loop, then a pending stop may finish
    bool stopping_ = false;

    // The parts, made by start() once the spool is open.
    std::unique_ptr<GroupCommit> group_;
    std::unique_ptr<ActiveSet> active_;
    std::unique_ptr<Scheduler> sched_;
    std::unique_ptr<Pickup> pickup_;
    std::map<uint64_t, std::pair<uint64_t, std::size_t>> milter_waiting_;  // milter_connect reqid -> (qid, index)
    uint64_t next_milter_reqid_ = 1;
    std::unique_ptr<AdminOps> admin_;
    std::unique_ptr<PeerLink> msgauth_;  // to mta-msgauth, for the mail Pickup takes in
    std::unique_ptr<Recovery> recovery_;  // until it is done
    EventPtr recovery_ev_;
    std::chrono::steady_clock::time_point recovery_began_;
};

}  // namespace mta::queue
