// The mta-smtp process: links to the master, the queue(s) and the resolver; turns each `deliver` into a
// Delivery and its outcome into a `deliver_result`. A malformed message from any peer ends the process.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "common/config.h"
#include "common/event_ptr.h"
#include "common/ipc.h"
#include "common/role.h"
#include "smtp-client/smtp_cache.h"
#include "smtp-client/smtp_delivery.h"
#include "common/dns_link.h"

namespace mta::smtp {

inline constexpr int kStopGraceSeconds = 10;

class Agent final : public daemon::MasterHandler {
public:
    Agent(event_base* base, Config cfg, UniqueFd master, SSL_CTX* tls);
    ~Agent();
    Agent(const Agent&) = delete;
    Agent& operator=(const Agent&) = delete;

private:
    struct QueueConn {
        uint64_t generation = 0;
        std::unique_ptr<ipc::Link> link;
    };
    struct Active {
        uint64_t queue_instance = 0, queue_generation = 0, reqid = 0;
        std::unique_ptr<Delivery> delivery;
    };

    // daemon::MasterHandler
    void on_peer(Role role, uint64_t instance, UniqueFd fd) override;
    void on_reload(Config next, const wire::Config& conf) override;
    void on_stop() override;

    void on_queue(uint64_t instance, uint64_t generation, ipc::Message& m);
    void on_queue_close(uint64_t instance, uint64_t generation, bool malformed);
    void on_delivery_done(uint64_t id);
    void maybe_exit();
    static void on_stop_timer(int, short, void*);

    event_base* base_;
    Config cfg_;
    SSL_CTX* tls_;
    std::map<uint64_t, QueueConn> queues_;
    DnsLink dns_;
    ConnCache cache_;
    std::mt19937 rng_;
    DeliveryEnv env_;
    std::map<std::string, RuaCacheEntry> rua_cache_;  // TLS-RPT records of policy domains
    std::map<uint64_t, Active> active_;
    uint64_t next_delivery_ = 1, next_generation_ = 1;
    bool stopping_ = false;
    EventPtr stop_timer_;
    daemon::MasterLink master_;
};

}  // namespace mta::smtp
