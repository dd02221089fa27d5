// The mta-smtpd process: listening sockets from the master, the link to mta-queue, and the set of
// sessions. Validates every message from the master and the queue before acting on it.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/ipc.h"
#include "smtpd/smtpd_rate.h"
#include "smtpd/smtpd_session.h"

struct event;
struct event_base;

namespace mta::smtpd {

struct EventFree {
    void operator()(event* e) const;
};
using EventPtr = std::unique_ptr<event, EventFree>;

class Server final : public SessionHost {
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

private:
    struct Listener {
        Server* owner = nullptr;
        UniqueFd fd;
        ListenKind kind = ListenKind::smtp;
        EventPtr ev;
    };

    void on_master(ipc::Message& m);
    void on_queue(ipc::Message& m);
    [[noreturn]] void malformed(const char* from, const std::string& why);
    void handle_peer(ipc::Message& m);
    void handle_listen(ipc::Message& m);
    void handle_config(ipc::Message& m);
    void set_queue(UniqueFd fd);
    void fail_pending();
    Session* take_pending(uint64_t reqid, bool& known);
    static void accept_cb(int fd, short, void* arg);
    void accept_from(Listener& l);
    void start_session(UniqueFd fd, const sockaddr_storage& ss, ListenKind kind);
    bool rate_allowed(const ClientInfo& client, const UniqueFd& fd);
    void pause_accepting(int seconds);
    void resume_accepting();
    void begin_stop();
    void recycle(const std::string& why);
    static void table_check_cb(int, short, void* arg);
    static void reap_cb(int, short, void* arg);
    static void timer_cb(int, short, void* arg);
    static void stop_deadline_cb(int, short, void* arg);

    event_base* base_;
    std::shared_ptr<const Config> cfg_;
    std::shared_ptr<const Resources> res_;
    std::unique_ptr<ipc::Link> master_;
    std::unique_ptr<ipc::Link> queue_;
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::map<uint64_t, std::unique_ptr<Session>> sessions_;
    std::vector<std::unique_ptr<Session>> graveyard_;
    std::vector<std::unique_ptr<ipc::Link>> dead_links_;
    std::map<uint64_t, uint64_t> pending_;   // queue reqid -> session id
    std::map<std::string, uint64_t> per_ip_;
    RateCounter conn_rate_;       // connections per client IP per minute
    RateCounter auth_fail_rate_;  // failed AUTH per client IP per minute
    uint64_t next_session_ = 1;
    uint64_t next_reqid_ = 1;
    uint64_t queue_generation_ = 0;
    bool accepting_ = true;
    bool stopping_ = false;
    bool recycling_ = false;  // exiting so that the master starts us again with fresh tables/certs
    EventPtr reaper_;
    EventPtr resume_timer_;   // re-enables accept after EMFILE
    EventPtr stop_timer_;     // hard deadline after `stop`
    EventPtr table_timer_;    // periodic check for replaced tables
};

}  // namespace mta::smtpd
