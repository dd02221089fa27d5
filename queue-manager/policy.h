// Retry policy as pure functions: backoff with jitter, queue lifetime, and the new state of a recipient
// after a delivery attempt. Time and randomness come in as arguments so tests are deterministic.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "queue-manager/records.h"

namespace mta {
struct Config;
}

namespace mta::queue {

struct RetryPolicy {
    uint64_t minimal_backoff = 300;
    uint64_t maximal_backoff = 3600;
    uint64_t queue_lifetime = 5 * 86400;
    uint64_t bounce_lifetime = 86400;   // for mail from the null sender
    static RetryPolicy from(const Config& cfg);
};

// Delay before attempt number attempts+1 after `attempts` failed ones (attempts >= 1): minimal doubling
// per attempt, capped at maximal, then scaled by (1 + jitter/10) where jitter is in [-1, 1] (±10%).
uint64_t backoff_delay(uint32_t attempts, const RetryPolicy& p, double jitter);

// How long the message may stay: queue_lifetime (null sender: bounce_lifetime).
uint64_t lifetime(const MessageRecord& m, const RetryPolicy& p);
// The message's lifetime has run out.
bool expired(const MessageRecord& m, const RetryPolicy& p, uint64_t now);

enum class Outcome { delivered, deferred, bounced };

// Applies one attempt's result to a recipient: attempts++, last error and its bounce class (when it failed),
// and either deferred with the next attempt time, or bounced (5xx, or a deferral past the lifetime:
// "message expired").
// Returns the effective outcome (a deferral may become a bounce).
Outcome apply_attempt(RecipientRecord& r, const MessageRecord& m, Outcome result, std::string_view text,
                      const RetryPolicy& p, uint64_t now, double jitter);

// Store at most kMaxErrorText bytes of remote text, with CR/LF/NUL replaced by spaces.
std::string clip_error(std::string_view text);

}  // namespace mta::queue
