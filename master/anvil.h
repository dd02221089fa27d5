// anvil: per-client connection and AUTH-failure counts kept by mtad for all mta-smtpd processes, so
// that smtpd_client_connection_limit, smtpd_client_connection_rate_limit and
// smtpd_client_auth_failure_rate_limit hold per MTA, not per process (like Postfix's anvil(8)).
// Pure bookkeeping, no I/O. Trusts nothing from the smtpd links: addresses arrive already checked
// by the caller (numeric), and every table is capped so a misbehaving smtpd cannot grow mtad.
#pragma once
#include <cstdint>
#include <ctime>
#include <map>
#include <string>

#include "common/rate.h"

namespace mta::master {

class Anvil {
public:
    struct Limits {
        uint64_t connections = 0;   // concurrent per client (0 = none)
        uint64_t rate = 0;          // connections per client per window (0 = none)
        uint64_t auth_failures = 0; // failed AUTH per client per window (0 = none)
    };
    enum class Result { allow, refuse_concurrency, refuse_rate };
    struct Verdict {
        Result result = Result::allow;
        uint64_t concurrent = 0;     // the client's connections now (this one included when allowed)
        uint64_t rate = 0;           // connections in the current rate window (this one included)
        uint64_t auth_failures = 0;  // failed AUTH in the current window
    };
    struct Totals {
        std::size_t clients = 0;      // addresses with open connections
        std::size_t connections = 0;  // open connections counted
        uint64_t refused = 0;         // connections refused since start
    };
    static constexpr std::size_t kMaxClients = 100000;      // distinct addresses per table
    static constexpr std::size_t kMaxPerLink = 200000;      // open connections one smtpd may report

    explicit Anvil(std::time_t window = 60, std::size_t max_clients = kMaxClients,
                   std::size_t max_per_link = kMaxPerLink);

    // A new connection `conn` on smtpd link `link` from `ip`. `exempt` (smtpd_client_event_limit_exceptions,
    // by default mynetworks) is never refused: its connections are counted (status shows them) but
    // neither limit applies. Returns false when `conn` is already open on that link (a protocol
    // violation; nothing is changed).
    bool connect(uint64_t link, uint64_t conn, const std::string& ip, bool exempt, std::time_t now,
                 const Limits& limits, Verdict& out);
    // The connection ended; unknown ids (refused, never counted, or made up) are ignored.
    void disconnect(uint64_t link, uint64_t conn);
    // The smtpd process behind `link` is gone: every connection it held is released.
    void drop_link(uint64_t link);
    // Records a failed AUTH (unless exempt or the limit is off); returns the window's count.
    uint64_t auth_fail(const std::string& ip, bool exempt, std::time_t now, const Limits& limits);
    uint64_t auth_failures(const std::string& ip, std::time_t now) const { return auth_.count(ip, now); }

    uint64_t concurrent(const std::string& ip) const;
    Totals totals() const;

private:
    void release(const std::string& ip);

    std::size_t max_clients_, max_per_link_;
    std::map<std::string, uint64_t> open_;                     // ip -> open connections
    std::map<uint64_t, std::map<uint64_t, std::string>> links_;  // link -> conn id -> ip
    std::size_t open_total_ = 0;
    uint64_t refused_ = 0;
    RateCounter rate_;
    RateCounter auth_;
};

}  // namespace mta::master
