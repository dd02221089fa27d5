// The mta-smtpd process: listening sockets from the master, the link to mta-queue, and the set of
// sessions; per-client limits are asked of mtad's anvil, and smtpd_dnsbl_zones of mta-resolver, before
// the greeting. Validates every message
// from the master and the queue before acting on it.
#pragma once
#include <cstdint>
#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/dns_link.h"
#include "common/event_ptr.h"
#include "common/ipc.h"
#include "common/peer_link.h"
#include "common/role.h"
#include "smtpd/smtpd_session.h"

namespace mta::smtpd {

// The ids of connections held before their greeting (anvil verdict, DNSBL answers) whose wait is over:
// past their deadline, or with a deadline further away than `limit` (the clock stepped back).
template <class Map>
std::vector<uint64_t> overdue(const Map& waiting, std::time_t now, std::time_t limit) {
    std::vector<uint64_t> late;
    for (auto& [id, w] : waiting)
        if (now >= w.deadline || w.deadline - now > limit) late.push_back(id);
    return late;
}

class Server final : public SessionHost, public daemon::MasterHandler {
public:
    Server(event_base* base, Config cfg, std::shared_ptr<const Resources> res, UniqueFd master);
    ~Server() override;

    // SessionHost
    std::optional<uint64_t> queue_request(ipc::Message m, uint64_t session_id) override;
    void queue_notify(ipc::Message m) override;
    void session_done(uint64_t session_id) override;
    std::time_t now() const override;
    void auth_failed(const ClientInfo& client) override;
    bool auth_blocked(const ClientInfo& client) const override;
    std::optional<uint64_t> spool_free() const override;
    std::optional<uint64_t> msgauth_request(ipc::Message m, uint64_t session_id) override;
    void milter_socket(uint64_t session_id, std::size_t index, const std::string& spec) override;  // smtpd_milter.cpp

private:
    struct Listener {
        Server* owner = nullptr;
        UniqueFd fd;
        ListenKind kind = ListenKind::smtp;
        EventPtr ev;
    };

    // daemon::MasterHandler
    void on_peer(Role role, uint64_t instance, UniqueFd fd) override;
    void on_listen(const std::string& kind, UniqueFd fd) override;
    void on_reload(Config next, const wire::Config& conf) override;
    void on_stop() override { begin_stop(); }
    void on_request(ipc::Message& m) override;  // anvil answers

    void on_queue(ipc::Message& m);
    void on_msgauth(ipc::Message& m);  // smtpd_msgauth.cpp
    void on_milter_socket(ipc::Message& m);  // smtpd_milter.cpp: milter_socket or fail from mtad
    [[noreturn]] void malformed(Role from, const std::string& why) { daemon::malformed(from, why); }
    Session* take_pending(uint64_t reqid, bool& known);
    static void accept_cb(int fd, short, void* arg);
    void accept_from(Listener& l);
    // Accepting and the per-client limits asked of mtad's anvil (smtpd_accept.cpp).
    void start_session(UniqueFd fd, const sockaddr_storage& ss, ListenKind kind);
    void on_anvil_verdict(ipc::Message& m);
    void on_anvil_auth_count(ipc::Message& m);
    void open_session(uint64_t id, UniqueFd fd, ClientInfo client);
    // The client passed anvil: DNSBL lookups first when they apply, then open_session (smtpd_dnsbl.cpp).
    void admit(uint64_t id, UniqueFd fd, ClientInfo client);
    void dnsbl_answer(uint64_t id, const DnsblZone& zone, const DnsAnswer& a);
    void dnsbl_done(uint64_t id, const char* why);
    static void dnsbl_timer_cb(int, short, void* arg);
    void refuse_client(UniqueFd fd, const ClientInfo& client, const std::string& why);
    void close_waiting();
    void anvil_disconnect(uint64_t id);
    static void anvil_timer_cb(int, short, void* arg);
    std::size_t connections() const { return sessions_.size() + waiting_.size() + dnsbl_waiting_.size(); }
    void maybe_resume();
    void pause_accepting(int seconds);
    void resume_accepting();
    void begin_stop();
    void recycle(const std::string& why);
    static void table_check_cb(int, short, void* arg);
    void exit_if_stopped();
    static void timer_cb(int, short, void* arg);
    static void stop_deadline_cb(int, short, void* arg);

    event_base* base_;
    std::shared_ptr<const Config> cfg_;
    std::shared_ptr<const Resources> res_;
    daemon::Reaper reaper_;  // frees ended sessions and closed links from the loop
    std::unique_ptr<daemon::MasterLink> master_;
    PeerLink queue_;
    PeerLink msgauth_;
    UniqueFd spool_probe_;  // O_PATH regular file on the queue's filesystem, from the queue (spool_probe)
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::map<uint64_t, std::unique_ptr<Session>> sessions_;
    // Accepted connections waiting for mtad's anvil_verdict (greeting held back), by anvil reqid,
    // which is also the session id.
    struct Waiting {
        UniqueFd fd;
        ClientInfo client;
        std::time_t deadline = 0;  // then fail open: never hang a client on a slow master
    };
    std::map<uint64_t, Waiting> waiting_;
    // Let in by anvil, waiting for their smtpd_dnsbl_zones answers (greeting still held back).
    struct DnsblWait {
        UniqueFd fd;
        ClientInfo client;
        std::size_t pending = 0;        // zones not answered yet
        int score = 0;                  // sum of the weights of the zones that list it
        std::vector<std::string> hits;  // zones with a positive weight that list it
        std::time_t deadline = 0;       // then the unanswered zones count as not listing it
    };
    std::map<uint64_t, DnsblWait> dnsbl_waiting_;
    DnsLink dns_;               // to mta-resolver (DNSBL lookups)
    EventPtr dnsbl_timer_;      // 1 s tick while connections wait for DNSBL answers
    // Per client IP with live sessions here: the AUTH failure count last learned from mtad plus our
    // own failures not yet answered (smtpd_client_auth_failure_rate_limit).
    struct ClientState {
        uint64_t sessions = 0;
        uint64_t auth_failures = 0;
        uint64_t auth_in_flight = 0;
    };
    std::map<std::string, ClientState> clients_;
    // milter_connect requests to mtad: reqid -> (session id, milter index). Their own reqid space, apart
    // from anvil's (which are session ids).
    std::map<uint64_t, std::pair<uint64_t, std::size_t>> milter_waiting_;
    uint64_t next_milter_reqid_ = uint64_t(1) << 62;
    uint64_t next_session_ = 1;
    uint64_t next_reqid_ = 1;
    bool accepting_ = true;
    bool stopping_ = false;
    bool recycling_ = false;  // exiting so that the master starts us again with fresh tables/certs
    EventPtr resume_timer_;   // re-enables accept after EMFILE
    EventPtr stop_timer_;     // hard deadline after `stop`
    EventPtr table_timer_;    // periodic check for replaced tables
    EventPtr anvil_timer_;    // 1 s tick while connections wait for a verdict
};

}  // namespace mta::smtpd
