// mtad, the master: owns config, listening sockets, the socketpairs between roles, child supervision
// (restart with backoff), signals (HUP reload, TERM/INT drain and stop) and the control socket.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/event_ptr.h"
#include "common/fd.h"
#include "common/ipc.h"
#include "common/metrics.h"
#include "common/role_name.h"
#include "master/anvil.h"
#include "master/control_server.h"
#include "master/publish.h"

namespace mta::master {

struct Listener {
    std::string kind;  // smtp | submission | smtps
    HostPort addr;
    UniqueFd fd;
};

struct Child {
    Role role = Role::smtpd;  // its program is role_program(role)
    uint64_t instance = 0;
    pid_t pid = -1;
    time_t started = 0;
    unsigned restarts = 0;
    unsigned backoff = 1;  // seconds before the next restart
    bool stopping = false;
    bool ready = false;    // its HELLO arrived: it has dropped privileges and serves
    std::unique_ptr<ipc::Link> link;
    EventPtr restart_timer;
    // Its counters as last reported: when it exits, they are kept (Master::retired_stats_) so the
    // sums do not go back.
    std::vector<metrics::Sample> last_stats;
};

class Master {
public:
    Master(std::string config_path, bool explicit_path, Config cfg, bool foreground);
    ~Master();
    int run();  // returns the exit status

    // Used by the control socket.
    std::string status_text() const;
    bool reload(std::string& msg);
    void begin_stop();
    void set_log_level(const std::string& level);
    const Config& config() const { return cfg_; }

private:
    bool prepare_filesystem(std::string& err);
    bool queue_format_ok(std::string& err);  // the spool is not from a newer release (forked check)
    bool open_listeners(std::string& err);
    void spawn(Child& c);
    void connect_peers(Child& c);
    void on_child_exit(pid_t pid, int status);
    void schedule_restart(Child& c, bool now = false);
    void kill_child(Child& c, const char* why);
    void on_child_message(Child& c, ipc::Message& m);
    void on_child_ready(Child& c, const std::string& role);
    void check_stopped();
    bool open_control(std::string& err);
    void on_control_request(const ControlPeer& peer, const std::string& line);
    std::string program_path(const std::string& program) const;

    static void on_signal(int sig, short, void* arg);
    static void on_restart_timer(int, short, void* arg);
    static void on_stop_timer(int, short, void* arg);

    std::string config_path_;
    bool explicit_path_;
    Config cfg_;
    bool foreground_;
    EventBasePtr base_owner_;
    event_base* base_ = nullptr;  // base_owner_'s, for the many libevent calls
    std::vector<Listener> listeners_;
    std::vector<std::unique_ptr<Child>> children_;
    std::vector<EventPtr> events_;
    std::unique_ptr<ControlServer> control_;  // the control socket's clients (control_server.h)
    TablePublisher tables_;  // copies of transport_map etc. inside mta-queue's chroot
    // Admin tool connections waiting for an answer relayed from a role, by request id.
    struct PendingAdmin {
        uint64_t client = 0;  // ControlPeer::id
        Role role;  // which role answers
        std::string command;
        bool streaming = false;  // a chunk with more to follow was relayed; the next waits for ask_more()
    };
    std::map<uint64_t, PendingAdmin> pending_admin_;
    uint64_t admin_seq_ = 0;
    Child* live_child(Role role);
    void relay_reply(ipc::Message& m);
    void fail_pending(Role role);
    void forget_pending(uint64_t client);
    void ask_more(uint64_t client);
    // anvil: per-client limits across all smtpd processes (master_anvil.cpp); links keyed by pid.
    Anvil anvil_;
    Anvil::Limits anvil_limits() const;
    bool on_anvil_message(Child& c, ipc::Message& m);
    std::string anvil_status_line() const;
    // Milters (master_milter.cpp): mtad connects the smtpd_milters an smtpd asks for and passes the socket.
    bool on_milter_connect(Child& c, ipc::Message& m);
    // Metrics (master_stats.cpp): one collection asks every role and renders the sum for mta-metrics
    // (Prometheus text) or a control client (mtactl stats, text or JSON).
    // none: a refresh of every process's last report (on_stats_refresh), nothing to render.
    enum class StatsFormat { prometheus, text, json, none };
    struct Gather {
        Master* owner = nullptr;
        uint64_t id = 0;
        StatsFormat format = StatsFormat::text;
        uint64_t client = 0;          // control peer id, or the reqid of mta-metrics' request
        std::vector<const Child*> waiting;
        metrics::Aggregate sum;
        // retired_stats_ as it was when the collection began: a process that answers and then exits
        // during the collection is in `sum` already, and must not count twice.
        std::map<std::pair<std::string, std::string>, uint64_t> retired;
        EventPtr timer;
    };
    static constexpr time_t kStatsRefreshSeconds = 30;
    std::map<uint64_t, std::unique_ptr<Gather>> gathers_;
    uint64_t gather_seq_ = 0;
    std::map<std::pair<std::string, std::string>, uint64_t> retired_stats_;
    void start_gather(StatsFormat format, uint64_t client);
    bool on_stats_message(Child& c, ipc::Message& m);
    void stats_child_gone(Child& c);
    void finish_gather(uint64_t id);
    std::vector<metrics::Sample> own_stats(const Gather& g) const;
    static void on_gather_timer(int, short, void* arg);
    static void on_stats_refresh(int, short, void* arg);
    bool stopping_ = false;
    bool announced_ready_ = false;
    int stop_phase_ = 0;
    int exit_status_ = 0;
};

// Creates the system users the roles run as when they are missing (root only).
bool ensure_user(const std::string& name, std::string& err);

}  // namespace mta::master
