// mtaqueue why: for each recipient of a message, the one rule that holds it now, in words and as a
// stable name for scripts: being delivered, held (by whom and when, or on arrival and why), bounced,
// due and waiting for a delivery slot of its destination, its destination dead until T, shaped by
// destination_policy, waiting for a warm-up allowance, a TLS policy failure, or back-off after attempt
// N. Pure: the queue server supplies the recipient records and the scheduler's view of the destination.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "queue-manager/admin.h"
#include "queue-manager/policy.h"

namespace mta::queue {

// What the scheduler knows about a recipient's destination now (Scheduler::describe).
struct DestinationView {
    std::string name;            // the destination (next hop or group); "" when the recipient is local
    bool known = false;          // the scheduler has work or health state for it
    std::size_t inflight = 0;    // deliveries running
    std::size_t window = 0;      // deliveries allowed at once now (slow start, max_connections)
    std::size_t waiting = 0;     // recipients waiting for a slot
    uint64_t dead_until = 0;     // marked dead (connection failures in a row) until then
    std::string dead_error;      // the failure that marked it
    uint32_t rate_per_minute = 0;  // messages a minute allowed now (0: no limit)
    bool throttled = false;      // an adaptive cut is in force
};

struct WhyContext {
    uint64_t now = 0;
    RetryPolicy policy;
    // The destination of a recipient address of this message (routed as the queue would route it now).
    std::function<DestinationView(const std::string& rcpt)> destination;
};

struct RcptWhy {
    std::string rule;    // in-flight, held, held-on-arrival, bounced, due, concurrency-limit, destination-dead,
                         // shaped, warm-up, tls-policy, backoff
    std::string detail;  // the rule in words, with the numbers that matter
    uint64_t until = 0;  // when the rule stops holding it (the next attempt), 0 = not by itself
    DestinationView destination;
};

RcptWhy explain(const MessageView& v, const RcptView& r, const WhyContext& c);

std::string format_why_text(const MessageView& v, const std::vector<RcptWhy>& why, const WhyContext& c);
std::string format_why_json(const MessageView& v, const std::vector<RcptWhy>& why, const WhyContext& c);

}  // namespace mta::queue
