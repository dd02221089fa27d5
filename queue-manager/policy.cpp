// Retry policy: backoff math, lifetime, and recipient state transitions after an attempt.
#include "queue-manager/policy.h"

#include <algorithm>

#include "common/config.h"
#include "queue-manager/bounce_class.h"

namespace mta::queue {

RetryPolicy RetryPolicy::from(const Config& cfg) {
    RetryPolicy p;
    p.minimal_backoff = std::max<uint64_t>(1, cfg.minimal_backoff_time);
    p.maximal_backoff = std::max(p.minimal_backoff, cfg.maximal_backoff_time);
    p.queue_lifetime = cfg.maximal_queue_lifetime;
    p.bounce_lifetime = cfg.bounce_queue_lifetime;
    return p;
}

uint64_t backoff_delay(uint32_t attempts, const RetryPolicy& p, double jitter) {
    uint64_t d = p.minimal_backoff;
    for (uint32_t i = 1; i < attempts && d < p.maximal_backoff; i++) d *= 2;
    d = std::min(d, p.maximal_backoff);
    jitter = std::clamp(jitter, -1.0, 1.0);
    double scaled = double(d) * (1.0 + jitter / 10.0);
    return std::max<uint64_t>(1, uint64_t(scaled + 0.5));
}

uint64_t lifetime(const MessageRecord& m, const RetryPolicy& p) {
    return m.sender.empty() ? p.bounce_lifetime : p.queue_lifetime;
}

bool expired(const MessageRecord& m, const RetryPolicy& p, uint64_t now) {
    return now >= m.arrival && now - m.arrival >= lifetime(m, p);
}

std::string clip_error(std::string_view text) {
    std::string s(text.substr(0, kMaxErrorText));
    for (char& c : s)
        if (c == '\0' || c == '\r' || c == '\n') c = ' ';
    return s;
}

Outcome apply_attempt(RecipientRecord& r, const MessageRecord& m, Outcome result, std::string_view text,
                      const RetryPolicy& p, uint64_t now, double jitter) {
    r.last_attempt = now;
    if (r.attempts < UINT32_MAX) r.attempts++;
    r.last_error = clip_error(text);
    if (result == Outcome::delivered) return result;
    if (result == Outcome::deferred && expired(m, p, now)) {
        r.last_error = clip_error("message expired: " + std::string(text));
        result = Outcome::bounced;
    }
    r.last_class = uint8_t(classify_failure(r.last_error, result == Outcome::bounced));
    if (result == Outcome::bounced) {
        r.state = RcptState::bounced;
        return result;
    }
    r.state = RcptState::deferred;
    r.next_attempt = now + backoff_delay(r.attempts, p, jitter);
    return result;
}

}  // namespace mta::queue
