// One `deliver` request from start to result: destination choice, cached connection or DNS + connect
// (trying up to kMaxAddressesPerAttempt addresses), the transaction, and per-recipient results.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/config.h"
#include "common/mta_sts.h"
#include "common/tlsrpt.h"
#include "smtp-client/smtp_cache.h"
#include "smtp-client/lmtp_nexthop.h"
#include "smtp-client/smtp_job.h"
#include "smtp-client/smtp_session.h"
#include "smtp-client/smtp_targets.h"

struct event_base;

namespace mta::smtp {

// A policy domain's TLS-RPT mailto: addresses (none: no usable _smtp._tls record), until `expires`.
struct RuaCacheEntry {
    uint64_t expires = 0;
    std::vector<std::string> mailto;
};

struct DeliveryEnv {
    event_base* base = nullptr;
    const Config* cfg = nullptr;
    DnsClient* dns = nullptr;
    ConnCache* cache = nullptr;
    SSL_CTX* tls = nullptr;
    std::function<uint32_t()> rng;
    std::map<std::string, RuaCacheEntry>* rua_cache = nullptr;  // the agent's, for tlsrpt_reports
};

class Delivery {
public:
    using Done = std::function<void(Delivery&)>;
    Delivery(const DeliveryEnv& env, Job job, Done done) : env_(env), job_(std::move(job)), done_(std::move(done)) {}
    ~Delivery() { *alive_ = false; }
    Delivery(const Delivery&) = delete;
    Delivery& operator=(const Delivery&) = delete;
    // Runs the delivery; `done` is called exactly once (maybe inside start()), and may destroy *this.
    void start();
    const Job& job() const { return job_; }
    // MTA-STS is about the recipient domain's own MX set: the plain next hop, or a transport_map `smtp:`
    // entry without a host (next hop "smtp:<recipient domain>"), never a relayhost or a table's host.
    bool sts_applies() const;
    // The MX set of the recipient domain itself (the same next hops as sts_applies(), at any TLS level).
    bool own_mx() const;

private:
    void start_lmtp();
    void resolve();
    void on_targets(TargetResult r);
    void try_next();
    void on_tlsa(const Target& t, const DaneDecision& d);
    // MTA-STS (smtp_delivery_sts.cpp): the policy for the recipient domain, then per MX host.
    void lookup_sts();
    void apply_sts(const Target& t);
    // REQUIRETLS (RFC 8689): this host cannot take the message; try the next one.
    void refuse_for_requiretls(const std::string& why);
    void connect(const Target& t, SessionSettings settings);
    SessionSettings settings() const;  // common part: HELO name, TLS context
    void on_open(bool ok, const std::string& err);
    void run(bool reused);
    void on_tx(TxOutcome o, bool reused);
    // Deferred recipients go to the next address when one is left: true if that was started.
    bool next_host_after_soft_failure(const std::string& error);
    void release_session();
    void finish(ipc::DeliveryStatus st, const std::string& text);
    void complete();
    void log_results() const;
    // TLS-RPT (smtp_delivery_tlsrpt.cpp): count the session just opened (or not) under its policy.
    void note_tls_result(bool opened);
    bool attach_tls_report();

    DeliveryEnv env_;
    Job job_;
    Done done_;
    Destination dest_;
    TlsLevel level_ = TlsLevel::may;
    bool lmtp_ = false;
    std::string cache_key_;                      // destination + TLS level
    std::map<std::string, DaneDecision> dane_;   // per MX host, this delivery only
    sts::Lookup sts_;                            // the domain's MTA-STS policy (found = false: none)
    std::string requiretls_error_;               // why the last host could not take REQUIRETLS mail
    std::size_t temp_failures_ = 0;              // hosts that failed for reasons that may go away
    std::size_t sessions_ = 0;                   // transactions started on a session, this attempt
    std::unique_ptr<TargetResolver> resolver_;
    std::vector<Target> targets_;
    std::size_t next_target_ = 0;
    std::string last_error_;
    std::unique_ptr<Session> session_;
    std::string relay_;  // "host[ip]:port" of the session used
    tlsrpt::Aggregate report_;  // this attempt's sessions under a DANE or MTA-STS policy
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // guards DNS callbacks
};

}  // namespace mta::smtp
